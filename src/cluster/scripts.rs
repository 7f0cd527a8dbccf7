//! The Lua scripts that change membership in Redis. Each runs atomically there: a join's check
//! and write, a leave, a lost node's cleanup, each with the channel message that announces it,
//! so that no node ever sees a change without its announcement or the other way round.
//!
//! Sent with EVAL (not EVALSHA): they are short, joins and leaves are rare next to messages, and
//! a Redis that restarted empty needs no reloading.

/// KEYS: members hash, version counter, the node's rooms set.
/// ARGV: peer, node, rule (`create`, `book`, or a capacity), room id, channel, and the time to
/// live of the three keys in ms (renewed by the nodes with members there; see `KEY_TTL`).
/// Returns `{1, version, members...}` (peer, node pairs), `{0}` when the rule says no, `{-1}`
/// when the peer is in already.
pub const JOIN: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {-1} end
local n = redis.call('HLEN', KEYS[1])
local rule = ARGV[3]
if rule == 'create' then
  if n ~= 0 then return {0} end
elseif rule == 'book' then
  if n ~= 1 then return {0} end
else
  if n >= tonumber(rule) then return {0} end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local v = redis.call('INCR', KEYS[2])
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('PUBLISH', ARGV[5], 'J ' .. v .. ' ' .. ARGV[1] .. ' ' .. ARGV[2])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[6]) end
return {1, v, redis.call('HGETALL', KEYS[1])}
"#;

/// KEYS: members hash, version counter, the node's rooms set.
/// ARGV: peer, node, room id, channel.
/// Returns 1 when the peer was a member.
pub const LEAVE: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local v = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[4], 'L ' .. v .. ' ' .. ARGV[1] .. ' ' .. ARGV[2] .. ' left')
local still = false
for _, node in ipairs(redis.call('HVALS', KEYS[1])) do
  if node == ARGV[2] then still = true break end
end
if not still then redis.call('SREM', KEYS[3], ARGV[3]) end
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1], KEYS[2]) end
return 1
"#;

/// Removes a node and every member it held, announcing each as lost. Run by any node that
/// finds another's lease gone, and by a node for itself when it stops; only the first run
/// finds anything (the node leaves the set of nodes in the same step), so each loss is
/// announced once.
/// KEYS: the set of nodes. ARGV: the node, the key prefix, `lost` or `left`, and whether to
/// check that its lease is gone (`1`).
/// Returns how many members were removed, or -1 when there was nothing to do.
pub const REMOVE_NODE: &str = r#"
local p = ARGV[2]
if ARGV[4] == '1' and redis.call('EXISTS', p .. 'lease:' .. ARGV[1]) == 1 then return -1 end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 and ARGV[4] == '1' then return -1 end
local removed = 0
local rooms_key = p .. 'rooms:' .. ARGV[1]
for _, room in ipairs(redis.call('SMEMBERS', rooms_key)) do
  local members = p .. 'room:' .. room
  local version = p .. 'ver:' .. room
  local all = redis.call('HGETALL', members)
  for i = 1, #all, 2 do
    if all[i + 1] == ARGV[1] then
      redis.call('HDEL', members, all[i])
      local v = redis.call('INCR', version)
      redis.call('PUBLISH', p .. 'ch:' .. room,
        'L ' .. v .. ' ' .. all[i] .. ' ' .. ARGV[1] .. ' ' .. ARGV[3])
      removed = removed + 1
    end
  end
  if redis.call('HLEN', members) == 0 then redis.call('DEL', members, version) end
end
redis.call('DEL', rooms_key, p .. 'lease:' .. ARGV[1])
return removed
"#;

/// A room as it stands. KEYS: members hash, version counter.
/// Returns `{1, version, members...}` as [`JOIN`] does.
pub const SNAPSHOT: &str = r#"
return {1, tonumber(redis.call('GET', KEYS[2]) or '0'), redis.call('HGETALL', KEYS[1])}
"#;
