// rtcserver room page: a multi-party (mesh) video call in the named room of the page's address.
//
// The page is served at /<room>; it opens ws(s)://<host>/socket/<room> (rooms-protocol.md). The
// server answers `authenticated` with our peer id and the ids already in the room, then tells us
// who `joined` and who `left`. Every message we send is `{event, data, to}` and the server relays it
// to the addressees with `from` set to our id.
//
// Mesh: one RTCPeerConnection per other participant. To avoid glare the NEWCOMER calls: it sends an
// `offer` to every peer listed in `authenticated`; the peers already in wait for the offer of the one
// that `joined` and answer it. `offer`, `answer` and `candidate` go to that one peer (`to: [id]`);
// `chat` goes to everyone (`to: "all"`).
//
// The four server events (`authenticated`, `joined`, `left`, `error`) never carry a `from`: one
// that does was sent by a member, and is ignored (rtcserver refuses them anyway; another server of
// the protocol might relay them). When this page's own connection ends under it (its peer crashed,
// the server stopped), the others have already closed their calls with it: the page closes its
// side too, says what happened and offers to join again. A full room's message links to the next
// room of the same name (`standup` -> `standup-2`, `standup-2` -> `standup-3`).
//
// ?stun=stun:host:port adds a STUN server; by default none is used (host candidates only, which is
// enough on localhost and a LAN).
//
// State for tests and for the curious: window.rtc = { ws, room, id, state, peers(), pc(id) }, where
// peers() lists { id, initiator, connectionState, iceConnectionState, signalingState, videoWidth,
// videoHeight } for every other participant.
(function () {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const ui = {
    full: $('full'),
    fullText: $('full-text'),
    fullOther: $('full-other'),
    error: $('error'),
    errorText: $('error-text'),
    roomName: $('room-name'),
    myId: $('my-id'),
    localId: $('local-id'),
    signalState: $('signal-state'),
    count: $('count'),
    countPart: $('count-part'),
    leave: $('leave'),
    call: $('call'),
    videos: $('videos'),
    localVideo: $('local-video'),
    alone: $('alone'),
    peopleLog: $('people-log'),
    chatLog: $('chat-log'),
    chatForm: $('chat-form'),
    chatInput: $('chat-input'),
    chatSend: $('chat-send'),
  };

  // ---- Page parameters -------------------------------------------------------------------
  const params = new URLSearchParams(location.search);
  const stunUrl = params.get('stun');
  const roomName = location.pathname.replace(/^\/+|\/+$/g, '');

  // ---- Shared state (also exposed for tests) ---------------------------------------------
  const peers = new Map(); // peer id -> { id, initiator, pc, pending, work, tile, video, ... }
  const rtc = {
    ws: null,
    room: null,
    id: null,
    state: 'connecting',
    peers: () => Array.from(peers.values(), describePeer),
    pc: (id) => {
      const peer = peers.get(String(id));
      return peer ? peer.pc : null;
    },
  };
  window.rtc = rtc;

  // Resume (docs/rooms-protocol.md, "Resume"): a dropped signaling connection comes back with the
  // same id and every message sent meanwhile, and the calls go on. `?resume=0` turns it off.
  const session = {
    enabled: params.get('resume') !== '0',
    token: null,
    windowMs: 0,
    lastSeq: 0, // the last numbered frame processed
    ackedSeq: 0,
    ackTimer: null,
    cseq: 0, // the number of this page's last message
    outbox: [], // {cseq, text} sent but not yet confirmed by a `resumed`, oldest first
    droppedAt: 0,
    attempts: 0,
  };
  const OUTBOX_MAX = 256;
  rtc.resumes = 0;

  let mediaReady = Promise.resolve(null); // the local camera stream (or null), once asked for

  const SIGNAL_WORDS = {
    connecting: 'connecting',
    joining: 'joining the room',
    'in-room': 'in the room',
    reconnecting: 'reconnecting…',
    full: 'room not available',
    left: 'you left the room',
    closed: 'disconnected from the server',
    error: 'error',
  };
  const PC_WORDS = {
    connecting: 'connecting',
    connected: 'connected',
    disconnected: 'interrupted',
    failed: 'failed',
    closed: 'closed',
  };
  // Events only the server sends: a message that says it comes `from` a member is not one of them.
  const SERVER_EVENTS = ['authenticated', 'joined', 'left', 'error'];
  // What a close of this page's own connection means (close-codes.md).
  const CLOSE_WORDS = {
    1001: 'the server is shutting down',
    1006: 'the connection to the server was lost',
    1011: 'the server\'s process for this page crashed',
    4002: 'the server could not resume this page\'s place in the room',
  };
  function closeWords(event) {
    // 1011 is also every peer's when the supervisor of all connections went down.
    const words = event.code === 1011 && event.reason === 'supervisor down'
      ? 'the server\'s supervisor of every connection went down'
      : CLOSE_WORDS[event.code] || 'the server closed the connection (code ' + event.code + ')';
    return event.reason ? words + ' (' + event.reason + ')' : words;
  }
  const ERROR_WORDS = {
    invalid_message: 'The server did not understand a message from this page.',
  };

  function setState(state) {
    rtc.state = state;
    ui.signalState.textContent = SIGNAL_WORDS[state] || state;
    const inRoom = state === 'in-room';
    // While reconnecting, chat lines wait for the connection and then go out.
    ui.chatInput.disabled = !(inRoom || state === 'reconnecting');
    ui.chatSend.disabled = !(inRoom || state === 'reconnecting');
    const out = state === 'left' || state === 'closed';
    ui.leave.disabled = !(inRoom || out);
    ui.leave.textContent = out ? 'Join again' : 'Leave';
    updateCount();
  }

  function updateCount() {
    const n = peers.size + 1;
    ui.count.textContent = n + (n === 1 ? ' participant' : ' participants');
    ui.alone.hidden = !(rtc.state === 'in-room' && peers.size === 0);
  }

  function showError(text) {
    ui.errorText.textContent = text;
    ui.error.hidden = false;
  }

  function appendLine(list, kind, who, text) {
    const li = document.createElement('li');
    li.className = kind;
    if (who) {
      const span = document.createElement('span');
      span.className = 'who';
      span.textContent = who;
      li.appendChild(span);
    }
    li.appendChild(document.createTextNode(text));
    list.appendChild(li);
    list.scrollTop = list.scrollHeight;
    return li;
  }

  function logPeople(kind, text, peerId) {
    const li = appendLine(ui.peopleLog, kind, null, text);
    if (peerId) li.dataset.peerId = peerId;
  }

  function logChat(kind, who, text) {
    appendLine(ui.chatLog, kind, who, text);
  }

  // ---- Signaling -------------------------------------------------------------------------
  function send(message) {
    const open = rtc.ws && rtc.ws.readyState === WebSocket.OPEN;
    if (!session.token) {
      if (!open) return false;
      rtc.ws.send(JSON.stringify(message));
      return true;
    }
    // Numbered and kept until a resume confirms it, so that what is sent while the connection
    // is down (or lost with it) goes out once the session is back, and never twice.
    message.cseq = ++session.cseq;
    const text = JSON.stringify(message);
    session.outbox.push({ cseq: session.cseq, text: text });
    if (session.outbox.length > OUTBOX_MAX) session.outbox.shift();
    if (open && rtc.state === 'in-room') rtc.ws.send(text);
    return open || rtc.state === 'reconnecting';
  }

  function signalingUrl(query) {
    return (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host +
      '/socket/' + encodeURIComponent(roomName) + (query ? '?' + query : '');
  }

  // A numbered frame: processed once (a resend after a resume may repeat one), acknowledged in
  // batches so that the server frees what it keeps for this page.
  function numbered(message) {
    if (typeof message.seq !== 'number') return true;
    if (message.seq <= session.lastSeq) return false;
    session.lastSeq = message.seq;
    if (session.lastSeq - session.ackedSeq >= 32) {
      ack();
    } else if (!session.ackTimer) {
      session.ackTimer = setTimeout(ack, 1000);
    }
    return true;
  }

  function ack() {
    clearTimeout(session.ackTimer);
    session.ackTimer = null;
    if (rtc.state !== 'in-room' || !rtc.ws || rtc.ws.readyState !== WebSocket.OPEN) return;
    session.ackedSeq = session.lastSeq;
    rtc.ws.send(JSON.stringify({ event: 'ack', data: { seq: session.lastSeq }, to: [] }));
  }

  function connectSignaling() {
    session.token = null;
    session.lastSeq = 0;
    session.ackedSeq = 0;
    session.cseq = 0;
    session.outbox = [];
    const ws = new WebSocket(signalingUrl(session.enabled ? 'resumable=1' : ''));
    rtc.ws = ws;
    ws.onopen = () => setState('joining');
    listen(ws);
  }

  function listen(ws) {
    ws.onmessage = (event) => {
      if (ws !== rtc.ws) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (e) {
        console.warn('ignoring a non-JSON signaling message', event.data);
        return;
      }
      if (!message || typeof message !== 'object' || typeof message.event !== 'string') return;
      if (!numbered(message)) return;
      const data = message.data;
      const from = message.from === undefined || message.from === null ? null : String(message.from);
      if (SERVER_EVENTS.includes(message.event) && 'from' in message) {
        console.warn('ignoring a server event sent by a member', message);
        return;
      }
      switch (message.event) {
        case 'authenticated': onAuthenticated(data || {}); break;
        case 'resumed': onResumed(data || {}); break;
        case 'resume_failed': break; // its close (4002) follows, and says the same
        case 'joined': onJoined(data || {}); break;
        case 'left': onLeft(data || {}); break;
        case 'error': onServerError(data || {}); break;
        case 'offer': fromPeer(from, true, (peer) => onOffer(peer, data)); break;
        case 'answer': fromPeer(from, false, (peer) => onAnswer(peer, data)); break;
        case 'candidate': fromPeer(from, false, (peer) => onCandidate(peer, data)); break;
        case 'chat': onChat(from, data); break;
        default: console.info('ignoring signaling message', message);
      }
    };

    ws.onerror = () => console.warn('signaling connection error');
    ws.onclose = (event) => {
      if (ws !== rtc.ws) return;
      if (rtc.state === 'full' || rtc.state === 'left') return;
      if (event.code === 4000) {
        // A refused join: the `error` that comes first normally says why already.
        refused(event.reason ? 'The room did not let you in (' + event.reason + ').' : 'The room did not let you in.');
        return;
      }
      if (mayResume(event)) {
        if (rtc.state === 'in-room') {
          session.droppedAt = Date.now();
          session.attempts = 0;
          setState('reconnecting');
          logPeople('system', 'Connection lost (' + closeWords(event) + '): reconnecting…');
        }
        retryResume();
        return;
      }
      giveUp(event);
    };
  }

  // Whether a lost connection may still be resumed: the server keeps this page's place for the
  // window, unless it ended the session itself (its shutdown, a newer connection, a failed resume).
  function mayResume(event) {
    if (!session.token || (rtc.state !== 'in-room' && rtc.state !== 'reconnecting')) return false;
    if ([1000, 4001, 4002].includes(event.code)) return false;
    if (event.code === 1001 && event.reason === 'server shutting down') return false;
    return Date.now() - (session.droppedAt || Date.now()) < session.windowMs;
  }

  function retryResume() {
    // Soon (a blip), then less often, until the window is over.
    const delay = Math.min(200 * Math.pow(2, session.attempts), 2000);
    session.attempts += 1;
    setTimeout(() => {
      if (rtc.state !== 'reconnecting') return;
      const ws = new WebSocket(signalingUrl('resume=1'));
      rtc.ws = ws;
      ws.onopen = () => ws.send(JSON.stringify({
        event: 'resume',
        data: { peer_id: rtc.id, token: session.token, last_seq: session.lastSeq },
      }));
      listen(ws);
    }, delay);
  }

  function onResumed(data) {
    if (typeof data.token === 'string') session.token = data.token;
    if (typeof data.window_ms === 'number') session.windowMs = data.window_ms;
    const taken = typeof data.last_cseq === 'number' ? data.last_cseq : 0;
    session.outbox = session.outbox.filter((m) => m.cseq > taken);
    rtc.resumes += 1;
    setState('in-room');
    logPeople('system', 'Connection restored: still ' + rtc.id + ', nothing missed.');
    ui.error.hidden = true;
    for (const m of session.outbox) rtc.ws.send(m.text);
    ack();
  }

  function giveUp(event) {
    const wasIn = rtc.state === 'in-room' || rtc.state === 'reconnecting';
    // The server has told everyone else that this page left, and they closed their calls with it.
    closeAll();
    setState('closed');
    if (wasIn) {
      const why = closeWords(event);
      logPeople('system', 'You are out of the room: ' + why + '.');
      showError('You are out of the room: ' + why + '. The others have ended their calls with you. ' +
        'Press "Join again" to come back.');
    } else {
      showError('Could not reach the server at ' + signalingUrl() + '.');
    }
  }

  function onAuthenticated(data) {
    rtc.id = String(data.peer_id);
    if (data.resume && typeof data.resume.token === 'string') {
      session.token = data.resume.token;
      session.windowMs = Number(data.resume.window_ms) || 0;
    }
    rtc.room = typeof data.room === 'string' ? data.room : roomName;
    ui.roomName.textContent = rtc.room;
    ui.myId.textContent = rtc.id;
    ui.localId.textContent = '(' + rtc.id + ')';
    document.title = 'rtcserver — room ' + rtc.room;
    const others = Array.isArray(data.peers) ? data.peers.map(String).filter((id) => id !== rtc.id) : [];
    setState('in-room');
    logPeople('system', 'You joined room ' + rtc.room + ' as ' + rtc.id + '.');
    if (others.length) {
      logPeople('system', 'Already here: ' + others.join(', ') + '.');
    }
    // We are the newcomer: we call everyone who is already in.
    for (const id of others) addPeer(id, true);
    updateCount();
  }

  function onJoined(data) {
    if (data.peer_id === undefined || data.peer_id === null) return;
    const id = String(data.peer_id);
    if (id === rtc.id) return;
    logPeople('joined', id + ' joined.', id);
    // The newcomer calls us: make the connection ready for its offer.
    if (peers.has(id)) removePeer(id);
    addPeer(id, false);
  }

  function onLeft(data) {
    if (data.peer_id === undefined || data.peer_id === null) return;
    const id = String(data.peer_id);
    logPeople('left', id + ' left.', id);
    removePeer(id);
  }

  function onServerError(data) {
    const description = typeof data.description === 'string' ? data.description : JSON.stringify(data);
    if (description === 'room_is_full') {
      refused('This room is full.');
    } else if (rtc.state !== 'in-room') {
      // Before `authenticated`, an error is the room refusing the join (a close 4000 follows).
      refused('The room did not let you in (' + description + ').');
    } else if (description === 'unknown_peer') {
      // A message crossed a participant on its way out; drop whoever the server named.
      const gone = Array.isArray(data.peers) ? data.peers.map(String) : [];
      logPeople('system', 'Not delivered to ' + (gone.length ? gone.join(', ') : 'someone') +
        ': no longer in the room.');
      for (const id of gone) removePeer(id);
    } else {
      showError(ERROR_WORDS[description] || 'The server reported an error: ' + description + '.');
    }
  }

  // The room to suggest when this one is full: the same name with the next number.
  function nextRoomName(name) {
    const m = /^(.*)-([0-9]{1,6})$/.exec(name);
    const suffix = '-' + (m ? Number(m[2]) + 1 : 2);
    return (m ? m[1] : name).slice(0, 64 - suffix.length) + suffix;
  }

  function refused(text) {
    if (rtc.state === 'full') return;
    ui.fullText.textContent = text;
    const other = nextRoomName(roomName);
    ui.fullOther.href = '/' + other + location.search;
    ui.fullOther.textContent = 'Open room ' + other + ' instead';
    ui.full.hidden = false;
    ui.roomName.textContent = roomName;
    // Nothing of the call happens on this page: keep only the message and the status line.
    ui.call.hidden = true;
    ui.countPart.hidden = true;
    ui.leave.hidden = true;
    setState('full');
    closeAll();
    stopLocalMedia();
  }

  function onChat(from, data) {
    let text = data;
    if (data && typeof data === 'object' && typeof data.text === 'string') text = data.text;
    if (typeof text !== 'string') text = JSON.stringify(text);
    logChat('peer', (from || '?') + ':', text);
  }

  // The offer/answer/candidate of one peer go through that peer's own queue, one at a time.
  function fromPeer(from, mayCreate, task) {
    if (!from || from === rtc.id) return;
    let peer = peers.get(from);
    if (!peer) {
      if (!mayCreate) {
        console.warn('ignoring a message from unknown peer', from);
        return;
      }
      // An offer whose `joined` we did not see: answer it all the same.
      peer = addPeer(from, false);
    }
    enqueue(peer, () => task(peer));
  }

  function enqueue(peer, task) {
    peer.work = peer.work.then(() => {
      if (!peer.closed) return task();
    }).catch((err) => {
      if (peer.closed) return;
      console.error(err);
      showError('Call setup with ' + peer.id + ' failed: ' + (err && err.message ? err.message : err));
    });
  }

  // ---- One peer: its tile and its RTCPeerConnection -----------------------------------------
  function addPeer(id, initiator) {
    const existing = peers.get(id);
    if (existing) return existing;
    const peer = {
      id: id,
      initiator: initiator,
      pc: null,
      pending: [], // remote candidates that arrived before the remote description
      work: Promise.resolve(),
      closed: false,
      stream: null,
    };
    makeTile(peer);
    peers.set(id, peer);
    updateCount();
    enqueue(peer, () => createPeerConnection(peer));
    if (initiator) enqueue(peer, () => makeOffer(peer));
    return peer;
  }

  function makeTile(peer) {
    const figure = document.createElement('figure');
    figure.className = 'tile remote';
    figure.dataset.peerId = peer.id;
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    const caption = document.createElement('figcaption');
    const idSpan = document.createElement('span');
    idSpan.className = 'peer-id';
    idSpan.textContent = peer.id;
    const state = document.createElement('span');
    state.className = 'pc-state';
    const unmute = document.createElement('button');
    unmute.type = 'button';
    unmute.textContent = 'Unmute';
    unmute.hidden = true;
    unmute.addEventListener('click', () => {
      video.muted = false;
      unmute.hidden = true;
      video.play().catch(() => {});
    });
    caption.append(idSpan, ' \u00b7 ', state, unmute);
    figure.append(video, caption);
    ui.videos.appendChild(figure);
    peer.tile = figure;
    peer.video = video;
    peer.stateEl = state;
    peer.unmute = unmute;
    showPeerState(peer);
  }

  function showPeerState(peer) {
    const pc = peer.pc;
    let words;
    let cls = 'new';
    if (!pc || pc.connectionState === 'new') {
      if (peer.initiator) words = 'calling';
      else words = pc && pc.remoteDescription ? 'answering' : 'waiting for their call';
    } else {
      cls = pc.connectionState;
      words = PC_WORDS[pc.connectionState] || pc.connectionState;
    }
    peer.stateEl.textContent = words;
    peer.tile.classList.remove('new', 'connecting', 'connected', 'disconnected', 'failed', 'closed');
    peer.tile.classList.add(cls);
  }

  async function createPeerConnection(peer) {
    const stream = await mediaReady;
    if (peer.closed) return;
    const pc = new RTCPeerConnection({ iceServers: stunUrl ? [{ urls: stunUrl }] : [] });
    peer.pc = pc;

    pc.onicecandidate = (event) => {
      if (event.candidate && !peer.closed) {
        send({ event: 'candidate', data: event.candidate.toJSON(), to: [peer.id] });
      }
    };

    pc.ontrack = (event) => {
      if (peer.closed || peer.pc !== pc) return;
      let remote = event.streams && event.streams[0];
      if (!remote) {
        remote = peer.stream || new MediaStream();
        remote.addTrack(event.track);
      }
      peer.stream = remote;
      if (peer.video.srcObject !== remote) {
        peer.video.srcObject = remote;
        playRemote(peer);
      }
    };

    pc.onconnectionstatechange = () => {
      if (peer.pc === pc && !peer.closed) showPeerState(peer);
    };
    pc.onsignalingstatechange = pc.onconnectionstatechange;

    if (stream) {
      stream.getTracks().forEach((track) => pc.addTrack(track, stream));
    } else if (peer.initiator) {
      // No camera here: still receive the other side's audio and video.
      pc.addTransceiver('audio', { direction: 'recvonly' });
      pc.addTransceiver('video', { direction: 'recvonly' });
    }
    showPeerState(peer);
  }

  function playRemote(peer) {
    // Autoplay with sound can be refused before the user touched the page: play muted then,
    // and offer an "Unmute" button.
    const video = peer.video;
    video.play().catch(() => {
      video.muted = true;
      peer.unmute.hidden = false;
      return video.play();
    }).catch((err) => console.warn('remote video of ' + peer.id + ' does not play', err));
  }

  function removePeer(id) {
    const peer = peers.get(id);
    if (!peer) return;
    peer.closed = true;
    peers.delete(id);
    if (peer.pc) peer.pc.close();
    peer.pending = [];
    peer.video.srcObject = null;
    peer.tile.remove();
    updateCount();
  }

  function closeAll() {
    for (const id of Array.from(peers.keys())) removePeer(id);
  }

  async function makeOffer(peer) {
    const pc = peer.pc;
    if (!pc) return;
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (peer.closed) return;
    send({ event: 'offer', data: { type: 'offer', sdp: pc.localDescription.sdp }, to: [peer.id] });
  }

  // Which side gives way if two offers ever cross (only the newcomer offers, so they should not).
  function politeTo(id) {
    const me = rtc.id || '';
    return me.length !== id.length ? me.length < id.length : me < id;
  }

  async function onOffer(peer, data) {
    const pc = peer.pc;
    if (!pc || !data || typeof data.sdp !== 'string') return;
    if (pc.signalingState === 'stable' && pc.remoteDescription && pc.remoteDescription.sdp === data.sdp) {
      // The offer in force, again (a resent or duplicated message): answering it anew would
      // send an answer the other side no longer waits for.
      console.warn('ignoring a copy of the offer in force from ' + peer.id);
      return;
    }
    if (pc.signalingState !== 'stable') {
      if (!politeTo(peer.id)) {
        console.warn('ignoring an offer from ' + peer.id + ' that crossed ours');
        return;
      }
      await pc.setLocalDescription({ type: 'rollback' });
    }
    await pc.setRemoteDescription({ type: 'offer', sdp: data.sdp });
    await addPendingCandidates(peer);
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    if (peer.closed) return;
    send({ event: 'answer', data: { type: 'answer', sdp: pc.localDescription.sdp }, to: [peer.id] });
  }

  async function onAnswer(peer, data) {
    const pc = peer.pc;
    if (!pc || !data || typeof data.sdp !== 'string') return;
    if (pc.signalingState !== 'have-local-offer') {
      console.warn('ignoring an answer from ' + peer.id + ' that was not asked for');
      return;
    }
    await pc.setRemoteDescription({ type: 'answer', sdp: data.sdp });
    await addPendingCandidates(peer);
  }

  async function onCandidate(peer, data) {
    if (!data || typeof data !== 'object') return;
    const pc = peer.pc;
    if (!pc || !pc.remoteDescription) {
      peer.pending.push(data);
      return;
    }
    await addCandidate(peer, data);
  }

  async function addPendingCandidates(peer) {
    const queued = peer.pending;
    peer.pending = [];
    for (const init of queued) await addCandidate(peer, init);
  }

  async function addCandidate(peer, init) {
    try {
      await peer.pc.addIceCandidate(init);
    } catch (err) {
      if (!peer.closed) console.warn('could not add a remote candidate of ' + peer.id, init, err);
    }
  }

  function describePeer(peer) {
    const pc = peer.pc;
    return {
      id: peer.id,
      initiator: peer.initiator,
      connectionState: pc ? pc.connectionState : 'none',
      iceConnectionState: pc ? pc.iceConnectionState : 'none',
      signalingState: pc ? pc.signalingState : 'none',
      videoWidth: peer.video.videoWidth,
      videoHeight: peer.video.videoHeight,
    };
  }

  // ---- Local media -----------------------------------------------------------------------
  async function getLocalMedia() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showError('This browser cannot use the camera here (a camera needs https or localhost). You can still see the others.');
      return null;
    }
    const tries = [{ video: true, audio: true }, { video: true }, { audio: true }];
    let lastError = null;
    for (const constraints of tries) {
      try {
        return await navigator.mediaDevices.getUserMedia(constraints);
      } catch (err) {
        lastError = err;
        if (err && err.name === 'NotAllowedError') break;
      }
    }
    showError('No camera or microphone: ' + (lastError && lastError.message ? lastError.message : lastError) +
      '. You can still see the others.');
    return null;
  }

  function stopLocalMedia() {
    mediaReady.then((stream) => {
      if (stream) stream.getTracks().forEach((track) => track.stop());
      ui.localVideo.srcObject = null;
    });
  }

  // ---- Chat ------------------------------------------------------------------------------
  ui.chatForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const text = ui.chatInput.value.trim();
    if (!text) return;
    if (send({ event: 'chat', data: { text: text }, to: 'all' })) {
      logChat('me', 'You:', text);
      ui.chatInput.value = '';
    } else {
      logChat('system', null, 'Not sent: the signaling connection is closed.');
    }
  });

  // ---- Leaving ---------------------------------------------------------------------------
  ui.leave.addEventListener('click', () => {
    if (rtc.state === 'left') {
      location.reload();
      return;
    }
    if (rtc.state === 'closed') {
      // The camera is still on: only the signaling connection is new (and a new peer id with it).
      ui.error.hidden = true;
      rtc.id = null;
      logPeople('system', 'Joining again…');
      setState('connecting');
      connectSignaling();
      return;
    }
    setState('left');
    if (rtc.ws) rtc.ws.close(1000, 'left');
    closeAll();
    stopLocalMedia();
    logPeople('system', 'You left the room.');
  });

  window.addEventListener('pagehide', () => {
    if (rtc.ws && rtc.ws.readyState === WebSocket.OPEN) rtc.ws.close(1000, 'page closed');
  });
  // Back from the back/forward cache, the signaling connection is gone: join afresh.
  window.addEventListener('pageshow', (event) => {
    if (event.persisted) location.reload();
  });

  // ---- Start -----------------------------------------------------------------------------
  ui.roomName.textContent = roomName || '?';
  setState('connecting');

  if (location.protocol !== 'http:' && location.protocol !== 'https:') {
    showError('Open this page through the server (http://<host>:30000/<room>), not from a file.');
    setState('error');
    return;
  }
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(roomName)) {
    showError('"' + roomName + '" is not a room name (1 to 64 letters, digits, ".", "_" or "-").');
    setState('error');
    return;
  }

  mediaReady = getLocalMedia().then((stream) => {
    if (stream) ui.localVideo.srcObject = stream;
    return stream;
  });
  connectSignaling();
})();
