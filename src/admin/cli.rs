//! The admin API's and chaos mode's command-line flags, flattened into the binary's.
use super::AdminToken;
use crate::chaos::ChaosSpec;
use crate::config::Config;
use std::net::SocketAddr;
use std::str::FromStr;

/// `--admin-bind`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminBind(pub Option<SocketAddr>);

impl FromStr for AdminBind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            return Ok(AdminBind(None));
        }
        s.parse()
            .map(|a| AdminBind(Some(a)))
            .map_err(|_| format!("{s:?} is neither an address (127.0.0.1:30001) nor \"off\""))
    }
}

#[derive(clap::Args, Debug, Default)]
pub struct AdminArgs {
    /// Address of the admin API (the observer page at /, GET /tree, POST /crash, GET /metrics,
    /// GET /events), or "off" [default: 127.0.0.1:30001; if that is taken, the server starts
    /// without it].
    #[arg(long, value_name = "ADDR|off")]
    pub admin_bind: Option<AdminBind>,
    /// Require "Authorization: Bearer TOKEN" on the admin API; needed to bind it beyond loopback.
    /// Visible in `ps`: prefer --admin-token-file or RTCSERVER_ADMIN_TOKEN.
    #[arg(long, value_name = "TOKEN")]
    pub admin_token: Option<AdminToken>,
    /// As --admin-token, the token being the first line of this file.
    #[arg(long, value_name = "PATH")]
    pub admin_token_file: Option<std::path::PathBuf>,
    /// Chaos mode: crash probabilities per relayed message (room, peer) and per accepted
    /// connection (listener), e.g. room=0.01,peer=0.001,listener=0.0001.
    #[arg(long, value_name = "SPEC")]
    pub chaos: Option<ChaosSpec>,
    /// Seed of chaos mode: the same seed and input give the same crashes [default: drawn, and
    /// logged].
    #[arg(long, value_name = "N", requires = "chaos")]
    pub chaos_seed: Option<u64>,
    /// Seed of the fault rules' generators: the same seed, rules and messages give the same
    /// faults (docs/faults.md) [default: drawn, and logged].
    #[arg(long, value_name = "N")]
    pub fault_seed: Option<u64>,
    /// Fault rules in force from the start: a JSON array of rules, as POST /faults/populate
    /// takes (docs/faults.md).
    #[arg(long, value_name = "FILE")]
    pub faults: Option<std::path::PathBuf>,
    /// Allow `?faults=<preset>` on the WebSocket URL of both endpoints: that preset's rules
    /// then act on the messages that client receives, until it leaves (docs/faults.md).
    #[arg(long)]
    pub client_faults: bool,
}

/// The environment variable that may hold the admin token (not visible in `ps`).
pub const TOKEN_ENV: &str = "RTCSERVER_ADMIN_TOKEN";

/// The token in the first line of `path`; errors name the file, never what it holds.
fn token_file(path: &std::path::Path) -> Result<AdminToken, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --admin-token-file {}: {e}", path.display()))?;
    let line = text.lines().next().unwrap_or_default().trim_end();
    line.parse()
        .map_err(|e| format!("--admin-token-file {}: {e}", path.display()))
}

impl AdminArgs {
    /// Sets `config` from the flags; the error is for the user (an unreadable `--faults` file).
    pub fn apply(self, config: &mut Config) -> Result<(), String> {
        if let Some(AdminBind(bind)) = self.admin_bind {
            config.admin_bind = bind;
            // An address the user chose must be had, or the start fails.
            config.admin_bind_required = true;
        }
        let from_env = std::env::var_os(TOKEN_ENV);
        config.admin_token = match (self.admin_token, &self.admin_token_file, from_env) {
            (None, None, None) => config.admin_token.take(),
            (Some(token), None, None) => Some(token),
            (None, Some(path), None) => Some(token_file(path)?),
            (None, None, Some(value)) => Some(
                value
                    .to_str()
                    .unwrap_or_default()
                    .parse()
                    .map_err(|e| format!("{TOKEN_ENV}: {e}"))?,
            ),
            _ => {
                return Err(format!(
                    "give the admin token one way: --admin-token, --admin-token-file or {TOKEN_ENV}"
                ))
            }
        };
        config.chaos = self.chaos.or(config.chaos);
        config.chaos_seed = self.chaos_seed.or(config.chaos_seed);
        config.fault_seed = self.fault_seed.or(config.fault_seed);
        config.client_faults |= self.client_faults;
        if let Some(path) = &self.faults {
            config.faults = crate::faults::rules_file(path)?;
        }
        Ok(())
    }
}
