// rtcserver demo client: a two-party video call over the book's signaling protocol.
//
// Without ?room=N in the page URL this side asks the server for a room (GETROOM), shows the invite
// link and waits; the other side's offer arrives and this side answers it. With ?room=N this side
// joins the room (ENTERROOM) and creates the offer. Everything else (offer, answer, candidate,
// CHATMSG) is relayed verbatim by the server to the other party.
//
// Surviving a demo: once a room is known it is in the address (?room=N) and in this tab's
// sessionStorage, so a reload of either side re-enters the same room (and calls the one still in
// it). A WRONGROOM on such a re-entry is retried a few times (the old connection of this tab may
// not have left yet), then the tab falls back to a new room (a tab that never was in the room
// shows the message instead). Leaving says goodbye to the other side with a relayed {"type":"bye"} (any JSON is
// relayed, so this stays the book protocol); without one (a crash, a lost network) the peer
// connection's failure says the same. The side left behind clears the remote video and shows the
// invite again.
//
// ?stun=stun:host:port adds a STUN server; by default none is used (host candidates only, which is
// enough on localhost and a LAN).
//
// State for tests and for the curious: window.rtc = { pc, ws, room, state, role, rejoining }.
(function () {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const ui = {
    invite: $('invite'),
    inviteLink: $('invite-link'),
    inviteAnchor: $('invite-anchor'),
    copyInvite: $('copy-invite'),
    wrongroom: $('wrongroom'),
    wrongroomText: $('wrongroom-text'),
    error: $('error'),
    errorText: $('error-text'),
    localVideo: $('local-video'),
    remoteVideo: $('remote-video'),
    unmute: $('unmute'),
    peerLeft: $('peer-left'),
    peerLeftText: $('peer-left-text'),
    signalState: $('signal-state'),
    pcState: $('pc-state'),
    roomLabel: $('room-label'),
    chatLog: $('chat-log'),
    chatForm: $('chat-form'),
    chatInput: $('chat-input'),
    chatSend: $('chat-send'),
  };

  // ---- Page parameters -------------------------------------------------------------------
  const params = new URLSearchParams(location.search);
  const roomParam = params.get('room');
  const stunUrl = params.get('stun');
  // 'host' asks for a room and waits for the offer; 'guest' enters ?room=N and makes the offer.
  const role = roomParam ? 'guest' : 'host';

  // The room this tab was last in, and whether it created it: survives a reload of the tab only.
  const ROOM_KEY = 'rtcserver-room';
  function rememberRoom(room, created) {
    try {
      sessionStorage.setItem(ROOM_KEY, JSON.stringify({ room: String(room), created: created }));
    } catch (e) { /* storage refused (private mode): a reload then starts afresh */ }
  }
  function rememberedRoom() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(ROOM_KEY) || 'null');
      return saved && typeof saved.room === 'string' ? saved : null;
    } catch (e) {
      return null;
    }
  }
  const remembered = rememberedRoom();
  // A reload (or back/forward) of a tab that was in room ?room=N: re-enter it, retrying a WRONGROOM.
  let rejoining = Boolean(roomParam && remembered && remembered.room === roomParam);
  const createdHere = rejoining && remembered.created === true;
  const ENTER_RETRIES = 4;
  const ENTER_RETRY_MS = 400;
  // A connection 'disconnected' this long is taken for gone (a crashed or killed tab says no bye).
  const DISCONNECTED_GRACE_MS = 4000;

  // ---- Shared state (also exposed for tests) ---------------------------------------------
  const rtc = { pc: null, ws: null, room: null, state: 'connecting', role: role, rejoining: rejoining };
  window.rtc = rtc;

  let enterTries = 0;
  let joinAttempt = 0;          // bumped by every ENTERROOM/GETROOM: a stale offer task gives up
  let disconnectedTimer = null;
  let remoteStream = null;
  let pendingCandidates = [];   // remote candidates that arrived before the remote description
  let work = Promise.resolve(); // offer/answer/candidate handling, one message at a time
  let mediaReady = Promise.resolve(null); // the local camera stream (or null), once asked for

  const SIGNAL_WORDS = {
    connecting: 'connecting',
    waiting: 'waiting for the other party',
    joining: 'joining the room',
    'in-call': 'in call',
    wrongroom: 'room not available',
    closed: 'disconnected from the server',
    error: 'error',
  };
  const PC_WORDS = {
    new: 'not connected yet',
    connecting: 'connecting',
    connected: 'connected',
    disconnected: 'interrupted (the other party may have left)',
    failed: 'failed',
    closed: 'closed',
  };

  function setState(state) {
    rtc.state = state;
    ui.signalState.textContent = SIGNAL_WORDS[state] || state;
    // Only while someone is there to read it: a line sent while alone would reach nobody.
    const chatOpen = state === 'in-call' || state === 'joining';
    ui.chatInput.disabled = !chatOpen;
    ui.chatSend.disabled = !chatOpen;
  }

  function showPcState() {
    ui.pcState.textContent = rtc.pc ? (PC_WORDS[rtc.pc.connectionState] || rtc.pc.connectionState) : 'not started';
  }

  function showError(text) {
    ui.errorText.textContent = text;
    ui.error.hidden = false;
  }

  function logChat(kind, text) {
    const li = document.createElement('li');
    li.className = kind;
    if (kind !== 'system') {
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = kind === 'me' ? 'You:' : 'Peer:';
      li.appendChild(who);
    }
    li.appendChild(document.createTextNode(text));
    ui.chatLog.appendChild(li);
    ui.chatLog.scrollTop = ui.chatLog.scrollHeight;
  }

  // ---- Signaling -------------------------------------------------------------------------
  function send(message) {
    if (rtc.ws && rtc.ws.readyState === WebSocket.OPEN) {
      rtc.ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  function signalingUrl() {
    return (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + '/';
  }

  function inviteUrl(room) {
    return location.origin + roomPath(room);
  }

  function roomPath(room) {
    let path = '/?room=' + room;
    if (stunUrl) path += '&stun=' + encodeURIComponent(stunUrl);
    return path;
  }

  function showInvite(room) {
    const url = inviteUrl(room);
    ui.inviteLink.value = url;
    ui.inviteAnchor.href = url;
    ui.invite.hidden = false;
  }

  function enterRoom(room) {
    rtc.room = room;
    ui.roomLabel.textContent = '(room ' + rtc.room + ')';
    send({ type: 'ENTERROOM', value: rtc.room });
    setState('joining');
    // No reply on success: go straight on to the offer (WRONGROOM, if it comes, stops this).
    const attempt = ++joinAttempt;
    enqueue(() => startCallAsCaller(attempt));
  }

  function connectSignaling() {
    const ws = new WebSocket(signalingUrl());
    rtc.ws = ws;

    ws.onopen = () => {
      if (role === 'host') {
        send({ type: 'GETROOM', value: '' });
      } else {
        enterRoom(Number(roomParam));
      }
    };

    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (e) {
        console.warn('ignoring a non-JSON signaling message', event.data);
        return;
      }
      if (!message || typeof message !== 'object') return;
      switch (message.type) {
        case 'GETROOM': onRoom(message.value); break;
        case 'WRONGROOM': onWrongRoom(); break;
        case 'CHATMSG': onChat(message.value); break;
        case 'offer': enqueue(() => onOffer(message)); break;
        case 'answer': enqueue(() => onAnswer(message)); break;
        case 'candidate': enqueue(() => onCandidate(message)); break;
        case 'bye': onOtherLeft('The other party left.'); break;
        default: console.info('ignoring signaling message', message);
      }
    };

    ws.onerror = () => console.warn('signaling connection error');
    ws.onclose = () => {
      if (rtc.state !== 'wrongroom') setState('closed');
    };
  }

  function enqueue(task) {
    work = work.then(task).catch((err) => {
      console.error(err);
      showError('Call setup failed: ' + (err && err.message ? err.message : err));
    });
  }

  function onRoom(room) {
    rtc.room = room;
    rememberRoom(room, true);
    // The room in the address: a reload of this tab re-enters it instead of starting another.
    history.replaceState(null, '', roomPath(room));
    showInvite(room);
    ui.roomLabel.textContent = '(room ' + room + ')';
    setState('waiting');
  }

  function onWrongRoom() {
    if (rtc.state === 'joining' && rejoining) {
      joinAttempt++; // the offer of the refused attempt, if not sent yet, is not sent
      closePeerConnection();
      if (enterTries < ENTER_RETRIES) {
        // This tab's previous connection may still hold its place in the room for a moment.
        enterTries++;
        setTimeout(() => enterRoom(rtc.room), ENTER_RETRY_MS);
        return;
      }
      // The room this tab was in is really gone (or taken): start a new one, as on the start page.
      console.info('room ' + rtc.room + ' is gone: asking for a new one');
      rejoining = false;
      rtc.rejoining = false;
      setState('connecting');
      send({ type: 'GETROOM', value: '' });
      return;
    }
    setState('wrongroom');
    ui.wrongroom.hidden = false;
    ui.invite.hidden = true;
    closePeerConnection();
    // No call will happen on this page: let the camera go.
    mediaReady.then((stream) => {
      if (stream) stream.getTracks().forEach((track) => track.stop());
      ui.localVideo.srcObject = null;
    });
  }

  function onChat(value) {
    logChat('peer', typeof value === 'string' ? value : JSON.stringify(value));
  }

  // The other party is gone (its goodbye, or its connection failed): this side waits in the room
  // for someone to follow the invite again.
  function onOtherLeft(text) {
    if (rtc.state !== 'in-call' && rtc.state !== 'joining') return;
    closePeerConnection();
    ui.peerLeftText.textContent = text;
    ui.peerLeft.hidden = false;
    logChat('system', text);
    if (rtc.room !== null) showInvite(rtc.room);
    setState('waiting');
  }

  function sayBye() {
    if (rtc.state === 'in-call' || rtc.state === 'joining') send({ type: 'bye' });
  }

  // ---- The peer connection ---------------------------------------------------------------
  function createPeerConnection(stream) {
    const pc = new RTCPeerConnection({ iceServers: stunUrl ? [{ urls: stunUrl }] : [] });
    rtc.pc = pc;

    pc.onicecandidate = (event) => {
      if (event.candidate) {
        send({
          type: 'candidate',
          label: event.candidate.sdpMLineIndex,
          id: event.candidate.sdpMid,
          candidate: event.candidate.candidate,
        });
      }
    };

    pc.ontrack = (event) => {
      if (pc !== rtc.pc) return;
      if (event.streams && event.streams[0]) {
        remoteStream = event.streams[0];
      } else {
        if (!remoteStream) remoteStream = new MediaStream();
        remoteStream.addTrack(event.track);
      }
      if (ui.remoteVideo.srcObject !== remoteStream) {
        ui.remoteVideo.srcObject = remoteStream;
        playRemote();
      }
    };

    pc.onconnectionstatechange = () => {
      if (pc !== rtc.pc) return;
      showPcState();
      clearTimeout(disconnectedTimer);
      if (pc.connectionState === 'failed') {
        onOtherLeft('The connection to the other party was lost.');
      } else if (pc.connectionState === 'disconnected') {
        disconnectedTimer = setTimeout(() => {
          if (pc === rtc.pc && pc.connectionState === 'disconnected') {
            onOtherLeft('The connection to the other party was lost.');
          }
        }, DISCONNECTED_GRACE_MS);
      }
    };

    if (stream) {
      stream.getTracks().forEach((track) => pc.addTrack(track, stream));
    } else if (role === 'guest') {
      // No camera here: still receive the other side's audio and video.
      pc.addTransceiver('audio', { direction: 'recvonly' });
      pc.addTransceiver('video', { direction: 'recvonly' });
    }
    showPcState();
    return pc;
  }

  // From outside the queue (a message, a timer), the queue is dropped as well: an operation still
  // pending on the closed connection never settles (per spec), and everything queued behind it
  // would wait for ever. A dropped task that does finish checks that its connection is current.
  function closePeerConnection(fromQueue) {
    clearTimeout(disconnectedTimer);
    if (!fromQueue) work = Promise.resolve();
    if (rtc.pc) {
      rtc.pc.close();
      rtc.pc = null;
    }
    pendingCandidates = [];
    remoteStream = null;
    ui.remoteVideo.srcObject = null;
    showPcState();
  }

  function playRemote() {
    // Autoplay with sound can be refused before the user touched the page: play muted then,
    // and offer an "Unmute" button.
    ui.remoteVideo.play().catch(() => {
      ui.remoteVideo.muted = true;
      ui.unmute.hidden = false;
      return ui.remoteVideo.play();
    }).catch((err) => console.warn('remote video does not play', err));
  }

  async function startCallAsCaller(attempt) {
    const stream = await mediaReady;
    if (rtc.state === 'wrongroom' || attempt !== joinAttempt) return;
    const pc = createPeerConnection(stream);
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (rtc.state === 'wrongroom' || attempt !== joinAttempt || pc !== rtc.pc) return;
    send({ type: 'offer', sdp: pc.localDescription.sdp });
  }

  async function onOffer(message) {
    if (rtc.pc && rtc.pc.remoteDescription && rtc.pc.remoteDescription.sdp === message.sdp) {
      // The offer in force, again (a resent or duplicated message): a new party's offer has
      // another session. Taking it for a new party would tear down a working call.
      console.warn('ignoring a copy of the offer in force');
      return;
    }
    if (rtc.pc && rtc.pc.remoteDescription) {
      // A new party entered the room after the previous one left without a word: start over.
      closePeerConnection(true);
      logChat('system', 'A new party joined the call.');
    } else if (!ui.peerLeft.hidden) {
      logChat('system', 'The other party joined the call.');
    }
    const stream = await mediaReady;
    const pc = rtc.pc || createPeerConnection(stream);
    await pc.setRemoteDescription({ type: 'offer', sdp: message.sdp });
    await addPendingCandidates(pc);
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    if (pc !== rtc.pc) return;
    send({ type: 'answer', sdp: pc.localDescription.sdp });
    ui.invite.hidden = true;
    ui.peerLeft.hidden = true;
    setState('in-call');
  }

  async function onAnswer(message) {
    const pc = rtc.pc;
    if (!pc || pc.signalingState !== 'have-local-offer') {
      console.warn('ignoring an answer that was not asked for');
      return;
    }
    await pc.setRemoteDescription({ type: 'answer', sdp: message.sdp });
    await addPendingCandidates(pc);
    if (pc !== rtc.pc) return;
    ui.invite.hidden = true;
    ui.peerLeft.hidden = true;
    // Entered: a reload of this tab re-enters this room (and keeps whether this tab created it).
    rememberRoom(rtc.room, createdHere);
    setState('in-call');
  }

  async function onCandidate(message) {
    const init = { candidate: message.candidate, sdpMLineIndex: message.label };
    if (typeof message.id === 'string') init.sdpMid = message.id;
    const pc = rtc.pc;
    if (!pc || !pc.remoteDescription) {
      pendingCandidates.push(init);
      return;
    }
    await addCandidate(pc, init);
  }

  async function addPendingCandidates(pc) {
    const queued = pendingCandidates;
    pendingCandidates = [];
    for (const init of queued) await addCandidate(pc, init);
  }

  async function addCandidate(pc, init) {
    try {
      await pc.addIceCandidate(init);
    } catch (err) {
      console.warn('could not add a remote candidate', init, err);
    }
  }

  // ---- Local media -----------------------------------------------------------------------
  async function getLocalMedia() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showError('This browser cannot use the camera here (a camera needs https or localhost). You can still see the other party.');
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
      '. You can still see the other party.');
    return null;
  }

  // ---- Chat ------------------------------------------------------------------------------
  ui.chatForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const text = ui.chatInput.value.trim();
    if (!text) return;
    if (send({ type: 'CHATMSG', value: text })) {
      logChat('me', text);
      ui.chatInput.value = '';
    } else {
      logChat('system', 'Not sent: the signaling connection is closed.');
    }
  });

  // ---- Invite box ------------------------------------------------------------------------
  ui.copyInvite.addEventListener('click', async () => {
    const text = ui.inviteLink.value;
    try {
      await navigator.clipboard.writeText(text);
    } catch (e) {
      ui.inviteLink.select();
      document.execCommand('copy');
    }
    ui.copyInvite.textContent = 'Copied';
    setTimeout(() => { ui.copyInvite.textContent = 'Copy'; }, 1500);
  });
  ui.inviteLink.addEventListener('focus', () => ui.inviteLink.select());

  // A reload, a closed tab or a navigation away: tell the other side, which shows the invite again.
  window.addEventListener('pagehide', sayBye);
  // Back from the back/forward cache, the signaling connection is gone: join afresh.
  window.addEventListener('pageshow', (event) => {
    if (event.persisted) location.reload();
  });

  ui.unmute.addEventListener('click', () => {
    ui.remoteVideo.muted = false;
    ui.unmute.hidden = true;
    ui.remoteVideo.play().catch(() => {});
  });

  // ---- Start -----------------------------------------------------------------------------
  setState('connecting');
  showPcState();

  if (roomParam !== null && roomParam !== '' && !/^[0-9]{1,15}$/.test(roomParam)) {
    ui.wrongroomText.textContent = '"' + roomParam + '" is not a room number.';
    onWrongRoom();
    return;
  }
  if (location.protocol !== 'http:' && location.protocol !== 'https:') {
    showError('Open this page through the server (http://<host>:30000/), not from a file.');
    setState('error');
    return;
  }

  mediaReady = getLocalMedia().then((stream) => {
    if (stream) ui.localVideo.srcObject = stream;
    return stream;
  });
  connectSignaling();
})();
