// The browser viewer of ipcd. It plays the mobile app's part of protocol-302
// signaling over MQTT-over-WebSocket the same way cmd/ipcapp/viewer does (see
// docs/protocol.md), plays the stream and shows getStats() numbers.
// window.ipcweb exposes the live objects for the console and the browser
// test.
'use strict';

(() => {
  const ANSWER_TIMEOUT_MS = 10000;
  const FIRST_FRAME_TIMEOUT_MS = 15000;
  const CONTROL_TIMEOUT_MS = 5000;
  // The device holds at most this many early candidates per session too.
  const MAX_PENDING_CANDIDATES = 32;
  const AUTH_LIFETIME_S = 3600;
  const LOG_LINES = 200;

  // App-facing codes of SPEC §5.3 and what the user can do about them.
  const REFUSALS = {
    '-101': 'No common codec: the camera streams a video codec this browser did not offer (it offers H.264, and H.265 when it can decode it).',
    '-102': 'The camera is in privacy mode.',
    '-104': 'The camera is busy: it already streams to as many viewers as it allows (stream.max_clients). Try again when one of them stops.',
    '-105': 'Auth failed: the camera did not accept the token. Check the P2P password and the device id, and that this computer\'s clock is right.',
    '-106': 'The camera closed the session.',
    '-108': 'Session timeout: the camera heard nothing from this browser for too long (no media path between them?).',
    '-114': 'The camera has no media memory left for another viewer (alloc resource failed). Try again when a viewer leaves.',
    '-115': 'Nothing is recorded on the camera\'s card at that moment.',
    '-116': 'The camera does not record (record.path is empty in its configuration).',
  };
  // close_reason to code, for a disconnect that carries no code.
  const REASON_CODES = {1: -101, 2: -102, 4: -104, 5: -105, 8: -108, 9: -106, 14: -114, 15: -115, 16: -116};
  const DAY_S = 86400;
  const CLOSE_USER = 9;

  const $ = (id) => document.getElementById(id);
  const ui = {
    video: $('video'),
    device: $('device'),
    status: $('status'),
    log: $('log'),
    main: $('main'),
    sub: $('sub'),
    mute: $('mute'),
    connect: $('connect'),
    day: $('day'),
    list: $('list'),
    golive: $('golive'),
    bar: $('bar'),
    st: {},
  };
  for (const k of ['state', 'stream', 'resolution', 'fps', 'bitrate', 'ttff', 'frames', 'lost',
    'candidate', 'rtt', 'vcodec', 'acodec', 'session']) {
    ui.st[k] = $('st-' + k);
  }

  const app = {
    cfg: null,
    from: '',
    client: null,
    ready: false,      // subscribed to topic_out at least once
    session: null,
    stream: 'main',
    controls: new Map(), // tid -> pending 312 request, oldest first
    stats: null,
    ranges: [],          // the listed day's recordings, unix seconds
    dayStart: 0,         // unix seconds of the listed day's midnight, local
  };

  // ---------------------------------------------------------------- helpers

  function randomHex(n) {
    const b = new Uint8Array(n);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }

  function base64url(bytes) {
    let s = '';
    for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  // signAuth issues the token the cloud would: <expires>.<sig>, sig being
  // base64url_nopad(HMAC-SHA256(P2P password, "302|dev_id|from|expires")).
  async function signAuth(password, devID, from, expires) {
    if (!window.crypto || !crypto.subtle) {
      throw new Error('WebCrypto is missing: browsers offer it only in a secure context. ' +
        'Open the page as http://127.0.0.1:PORT or http://localhost:PORT, or serve it over https.');
    }
    const enc = new TextEncoder();
    const key = await crypto.subtle.importKey('raw', enc.encode(password),
      {name: 'HMAC', hash: 'SHA-256'}, false, ['sign']);
    const sig = await crypto.subtle.sign('HMAC', key, enc.encode(`302|${devID}|${from}|${expires}`));
    return `${expires}.${base64url(new Uint8Array(sig))}`;
  }

  function log(level, text) {
    (level === 'error' ? console.error : level === 'warn' ? console.warn : console.info)('ipcweb: ' + text);
    const li = document.createElement('li');
    li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
    if (level === 'error') li.className = 'error';
    ui.log.appendChild(li);
    while (ui.log.childElementCount > LOG_LINES) ui.log.firstElementChild.remove();
    ui.log.scrollTop = ui.log.scrollHeight;
  }

  function setStatus(level, text) {
    ui.status.textContent = text;
    ui.status.className = 'status ' + level;
    log(level, text);
  }

  function streamType(name) {
    return name === 'sub' ? 1 : 0;
  }

  // ------------------------------------------------------------------- MQTT

  function publish(protocol, data) {
    const env = {protocol, pv: '2.2', t: Math.floor(Date.now() / 1000), data};
    app.client.publish(app.cfg.topic_in, JSON.stringify(env), {qos: 1}, (err) => {
      if (err) log('error', `publish ${protocol} ${data.header.type}: ${err.message}`);
    });
  }

  function header(s, type) {
    return {type, from: app.from, to: app.cfg.dev_id, sessionid: s.id};
  }

  function connectBroker() {
    const cfg = app.cfg;
    const opts = {
      clientId: `${app.from}-${randomHex(3)}`,
      protocolVersion: 4,
      clean: true,
      keepalive: 30,
      connectTimeout: 5000,
      reconnectPeriod: 2000,
      // Subscribing in the connect handler renews it after a reconnect.
      resubscribe: false,
    };
    if (cfg.username) {
      opts.username = cfg.username;
      opts.password = cfg.password || '';
    }
    setStatus('info', `Connecting to the broker at ${cfg.broker}…`);
    let connectedOnce = false;
    const c = mqtt.connect(cfg.broker, opts);
    app.client = c;
    c.on('connect', () => {
      connectedOnce = true;
      c.subscribe(cfg.topic_out, {qos: 1}, (err, granted) => {
        if (err || !granted || !granted.length || granted[0].qos === 128) {
          setStatus('error', `The broker refused the subscription to ${cfg.topic_out}${err ? ': ' + err.message : ''}.`);
          return;
        }
        log('info', `subscribed to ${cfg.topic_out}`);
        if (!app.ready) {
          app.ready = true;
          startSession(app.stream);
        }
      });
    });
    c.on('message', onMessage);
    c.on('error', (err) => setStatus('error', `MQTT: ${err.message}`));
    let toldUnreachable = false;
    c.on('close', () => {
      if (!connectedOnce && !toldUnreachable) {
        toldUnreachable = true;
        setStatus('error', `Cannot reach the broker at ${cfg.broker} over WebSocket. Is ipcd running with ` +
          'mqtt.embedded_broker_ws on that address (or your broker\'s WebSocket listener)? Retrying…');
      }
    });
    c.on('offline', () => {
      if (connectedOnce) log('warn', 'broker connection lost; a running stream goes on (media is peer to peer), retrying');
    });
  }

  function onMessage(_topic, payload) {
    let env;
    try {
      env = JSON.parse(new TextDecoder().decode(payload));
    } catch (e) {
      log('warn', `dropped a message that is not JSON (${payload.length} bytes)`);
      return;
    }
    const data = env && env.data;
    const h = data && data.header;
    if (!h || h.to !== app.from) return;
    if (env.protocol === 302) on302(h, data.msg || {});
    else if (env.protocol === 312) on312(h, data.msg || {});
  }

  // ------------------------------------------------------------ the session

  class Session {
    constructor(stream, replay) {
      this.id = randomHex(8);
      this.stream = stream;
      this.replay = replay || null; // {is_replay, start_time, end_time}: play the card
      this.dc = null;               // the control channel
      this.dcReq = 100;
      this.dcWaits = new Map();     // req -> pending control command
      this.pc = null;
      this.mid = null;
      this.media = new MediaStream();
      this.offered = false;
      this.answered = false; // the answer arrived
      this.remoteSet = false; // and is applied
      this.pending = [];     // remote candidates waiting for the answer
      this.localQueue = [];  // local candidates waiting for the offer to go out
      this.offerAt = 0;
      this.firstFrameAt = 0;
      this.timers = [];
      this.closed = false;
      this.prev = null;
      this.switchedFrom = ''; // picture size when a 312 switch was accepted
    }
  }

  // preferCodecs narrows the offer to what the device can send, in the
  // order the reference client offers them; a browser that cannot decode
  // any of them offers its defaults and the device refuses with -101.
  function preferCodecs(tr, kind, mimes, keep) {
    if (!tr.setCodecPreferences || !RTCRtpReceiver.getCapabilities) return;
    const caps = RTCRtpReceiver.getCapabilities(kind);
    if (!caps) return;
    const picked = [];
    for (const m of mimes) {
      for (const c of caps.codecs) {
        if (c.mimeType.toLowerCase() === m.toLowerCase() && keep(c)) picked.push(c);
      }
    }
    if (picked.length === 0) {
      log('warn', `this browser cannot decode any of ${mimes.join(', ')}`);
      return;
    }
    tr.setCodecPreferences(picked);
  }

  // The device fragments large NAL units with FU-A, so only
  // packetization-mode=1 is offered for H.264.
  function keepVideo(c) {
    return c.mimeType.toLowerCase() !== 'video/h264' || /packetization-mode=1/.test(c.sdpFmtpLine || '');
  }

  async function startSession(stream, replay) {
    if (app.session) endSession(app.session, true);
    const s = new Session(stream, replay);
    app.session = s;
    app.stream = stream;
    app.stats = null;
    renderButtons();
    renderStats(null);
    ui.st.session.textContent = s.id;
    ui.st.stream.textContent = stream;
    setStatus('info', replay ? `Calling ${app.cfg.dev_id} for its recording at ${clock(replay.start_time)}…`
      : `Calling ${app.cfg.dev_id} for the ${stream} stream…`);

    let auth;
    try {
      auth = await signAuth(app.cfg.p2p_password, app.cfg.dev_id, app.from,
        Math.floor(Date.now() / 1000) + AUTH_LIFETIME_S);
    } catch (e) {
      failSession(s, e.message);
      return;
    }
    if (s.closed) return;

    try {
      // max-bundle: one transport, as the device has one ICE agent and the
      // candidate messages carry no m-line.
      const pc = new RTCPeerConnection({iceServers: app.cfg.ice_servers || [], bundlePolicy: 'max-bundle'});
      s.pc = pc;
      pc.onicecandidate = (e) => onLocalCandidate(s, e.candidate);
      pc.ontrack = (e) => onTrack(s, e.track);
      pc.onconnectionstatechange = () => onConnectionState(s);
      // Audio sendrecv first, then video recvonly, as the app offers:
      // sendrecv leaves room for talkback.
      const audio = pc.addTransceiver('audio', {direction: 'sendrecv'});
      const video = pc.addTransceiver('video', {direction: 'recvonly'});
      preferCodecs(audio, 'audio', ['audio/PCMU', 'audio/PCMA'], () => true);
      preferCodecs(video, 'video', ['video/H264', 'video/H265'], keepVideo);
      openControl(s, pc);
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      if (s.closed) return;
      s.mid = audio.mid;
      s.offerAt = performance.now();
      const msg = {
        mode: 'webrtc',
        sdp: offer.sdp,
        stream_type: streamType(stream),
        auth,
        datachannel_enable: false,
      };
      if (s.replay) msg.replay = s.replay;
      if (app.cfg.ice_servers && app.cfg.ice_servers.length) msg.token = app.cfg.ice_servers;
      publish(302, {header: header(s, 'offer'), msg});
      s.offered = true;
      log('info', `offer sent, session ${s.id}, stream_type ${msg.stream_type}`);
      for (const line of s.localQueue) sendCandidate(s, line);
      s.localQueue = [];
    } catch (e) {
      failSession(s, `Could not build the offer: ${e.message}`);
      return;
    }
    s.timers.push(setTimeout(() => {
      if (!s.answered) {
        failSession(s, `No answer from ${app.cfg.dev_id} within ${ANSWER_TIMEOUT_MS / 1000} s. ` +
          'Is ipcd running, Ready (activated, clock synced), and using these topics?');
      }
    }, ANSWER_TIMEOUT_MS));
    s.timers.push(setTimeout(() => {
      if (!s.firstFrameAt) {
        failSession(s, `No video within ${FIRST_FRAME_TIMEOUT_MS / 1000} s of the offer ` +
          `(connection ${s.pc ? s.pc.connectionState : 'none'}).`);
      }
    }, FIRST_FRAME_TIMEOUT_MS));
  }

  function candidateAddress(c) {
    return c.address || c.candidate.split(' ')[4] || '';
  }

  function onLocalCandidate(s, cand) {
    if (s.closed) return;
    let line;
    if (cand === null) {
      line = ''; // end of candidates
    } else if (!cand.candidate) {
      return; // a per-m-line end marker; the null that follows ends the list
    } else if (candidateAddress(cand).endsWith('.local')) {
      // An mDNS name hides the address; the device does not resolve .local
      // names. It still reaches this browser as a peer-reflexive candidate
      // through the checks the browser sends to the device's candidates.
      log('warn', `not sending mDNS candidate ${candidateAddress(cand)}: the camera cannot resolve .local names ` +
        '(Chrome shows real addresses with --disable-features=WebRtcHideLocalIpsWithMdns)');
      return;
    } else {
      line = `a=${cand.candidate}\r\n`;
      log('info', `local candidate ${cand.type || ''} ${candidateAddress(cand)}:${cand.port || ''} ${cand.protocol || ''}`);
    }
    if (!s.offered) {
      s.localQueue.push(line);
      return;
    }
    sendCandidate(s, line);
  }

  function sendCandidate(s, line) {
    publish(302, {header: header(s, 'candidate'), msg: {mode: 'webrtc', candidate: line}});
  }

  function onTrack(s, track) {
    if (s.closed) return;
    log('info', `${track.kind} track`);
    s.media.addTrack(track);
    if (ui.video.srcObject !== s.media) ui.video.srcObject = s.media;
    if (track.kind === 'video') watchFirstFrame(s);
    play();
  }

  function play() {
    const p = ui.video.play();
    if (!p) return;
    p.catch((err) => {
      if (err.name !== 'NotAllowedError' || ui.video.muted) return;
      // Autoplay with sound needs a user gesture in most browsers.
      ui.video.muted = true;
      renderButtons();
      log('warn', 'the browser blocks autoplay with sound: muted; press Unmute to hear the camera');
      ui.video.play().catch(() => {});
    });
  }

  function watchFirstFrame(s) {
    const v = ui.video;
    if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(() => firstFrame(s));
    else v.addEventListener('loadeddata', () => firstFrame(s), {once: true});
  }

  // firstFrame is also called from the stats loop, for a browser that
  // presents the frame before the callback above is registered.
  function firstFrame(s) {
    if (s.closed || s.firstFrameAt) return;
    s.firstFrameAt = performance.now();
    ui.st.ttff.textContent = `${Math.round(s.firstFrameAt - s.offerAt)} ms`;
    setStatus('ok', liveText(s));
  }

  function liveText(s) {
    if (s.replay) return `Playback: ${app.cfg.dev_id}, recorded at ${clock(s.replay.start_time)}.`;
    return `Live: ${app.cfg.dev_id}, ${s.stream} stream.`;
  }

  function onConnectionState(s) {
    if (s.closed) return;
    const st = s.pc.connectionState;
    ui.st.state.textContent = st;
    log('info', `peer connection ${st}`);
    if (st === 'failed') {
      failSession(s, 'The peer connection failed: no network path between this browser and the camera was found (ICE). ' +
        'A TURN server in the ICE servers can carry the media when direct paths are blocked.');
    } else if (st === 'disconnected') {
      setStatus('warn', 'The media path is interrupted; waiting for it to recover…');
    } else if (st === 'connected' && s.firstFrameAt) {
      setStatus('ok', liveText(s));
    }
  }

  function on302(h, msg) {
    const s = app.session;
    if (!s || s.closed || h.sessionid !== s.id) return;
    switch (h.type) {
      case 'answer':
        onAnswer(s, msg);
        break;
      case 'candidate':
        onRemoteCandidate(s, msg.candidate);
        break;
      case 'disconnect':
        onDisconnect(s, msg);
        break;
    }
  }

  async function onAnswer(s, msg) {
    if (s.answered) {
      log('info', 'ignored a second answer');
      return;
    }
    s.answered = true;
    try {
      await s.pc.setRemoteDescription({type: 'answer', sdp: msg.sdp});
    } catch (e) {
      failSession(s, `The camera's answer cannot be used: ${e.message}`);
      return;
    }
    if (s.closed) return;
    s.remoteSet = true;
    log('info', 'answer applied');
    for (const c of s.pending) addRemoteCandidate(s, c);
    s.pending = [];
  }

  function onRemoteCandidate(s, raw) {
    const c = String(raw || '').trim().replace(/^a=/, '');
    if (s.remoteSet) {
      addRemoteCandidate(s, c);
    } else if (s.pending.length < MAX_PENDING_CANDIDATES) {
      s.pending.push(c);
    } else {
      log('warn', 'dropped a candidate that came before the answer: queue full');
    }
  }

  function addRemoteCandidate(s, c) {
    if (c === '') log('info', 'camera candidates complete');
    // An empty candidate is the standard end-of-candidates signal.
    s.pc.addIceCandidate({candidate: c, sdpMid: s.mid, sdpMLineIndex: 0}).catch((e) => {
      if (c !== '') log('warn', `ignored camera candidate ${c}: ${e.message}`);
    });
  }

  function onDisconnect(s, msg) {
    const code = msg.code || REASON_CODES[msg.close_reason] || 0;
    const text = REFUSALS[String(code)] || 'The camera ended the session.';
    const detail = `code ${code}, close_reason ${msg.close_reason}${msg.message ? ': ' + msg.message : ''}`;
    endSession(s, false);
    setStatus('error', `${text} (${detail})`);
  }

  function failSession(s, text) {
    endSession(s, true);
    setStatus('error', text);
  }

  // endSession closes s; notify tells the device unless the device ended it.
  function endSession(s, notify) {
    if (s.closed) return;
    s.closed = true;
    for (const t of s.timers) clearTimeout(t);
    if (notify && s.offered) {
      publish(302, {header: header(s, 'disconnect'), msg: {mode: 'webrtc', close_reason: CLOSE_USER}});
    }
    if (s.pc) s.pc.close();
    for (const [, w] of s.dcWaits) {
      clearTimeout(w.timer);
      w.resolve(null);
    }
    s.dcWaits.clear();
    for (const [tid, w] of app.controls) {
      if (w.sessionid === s.id) {
        clearTimeout(w.timer);
        app.controls.delete(tid);
        w.resolve(null);
      }
    }
    if (ui.video.srcObject === s.media) ui.video.srcObject = null;
    ui.st.state.textContent = 'closed';
    renderButtons();
  }

  function live() {
    const s = app.session;
    return s && !s.closed ? s : null;
  }

  // ---------------------------------------------------- protocol 312 control

  // control sends a 312 request and resolves with the reply's msg, or null
  // when none came in time.
  function control(s, type, value) {
    return new Promise((resolve) => {
      const tid = randomHex(6);
      const timer = setTimeout(() => {
        app.controls.delete(tid);
        resolve(null);
      }, CONTROL_TIMEOUT_MS);
      app.controls.set(tid, {sessionid: s.id, type, resolve, timer});
      publish(312, {header: {...header(s, type), tid}, msg: {cmdValue: value}});
    });
  }

  // on312 matches a reply by tid, else to the oldest request of the same
  // session and type, for a device that does not echo tid.
  function on312(h, msg) {
    let key = h.tid;
    let w = app.controls.get(key);
    if (!w || w.sessionid !== h.sessionid || w.type !== h.type) {
      w = null;
      for (const [k, c] of app.controls) {
        if (c.sessionid === h.sessionid && c.type === h.type) {
          w = c;
          key = k;
          break;
        }
      }
    }
    if (!w) return;
    app.controls.delete(key);
    clearTimeout(w.timer);
    w.resolve({resCode: Number(msg.resCode) || 0, message: msg.message || ''});
  }

  async function switchStream(to) {
    const s = live();
    if (!s || !s.remoteSet) {
      startSession(to);
      return;
    }
    if (s.stream === to) return;
    setStatus('info', `Asking the camera for the ${to} stream…`);
    const r = await control(s, 'resolution', streamType(to));
    if (s !== app.session || s.closed) return;
    if (r && r.resCode === 0) {
      s.stream = to;
      s.switchedFrom = app.stats ? `${app.stats.width}x${app.stats.height}` : '';
      app.stream = to;
      ui.st.stream.textContent = to;
      renderButtons();
      setStatus('ok', `Live: ${app.cfg.dev_id}, switching to the ${to} stream at its next keyframe.`);
      return;
    }
    if (r && r.resCode === 3) {
      setStatus('warn', `The camera has no ${to} stream (${r.message || 'not configured'}).`);
      return;
    }
    // The streams' codecs differ (4), or the device does not do 312: a new
    // session asks for the stream in its offer.
    log('info', r ? `312 refused: resCode ${r.resCode} ${r.message}; reconnecting with the ${to} stream`
      : `no 312 reply; reconnecting with the ${to} stream`);
    startSession(to);
  }

  // ---------------------------------------------- control channel, recordings

  // openControl opens the "control" data channel the playback commands and
  // the recordings listing go over (docs/protocol.md).
  function openControl(s, pc) {
    const dc = pc.createDataChannel('control');
    s.dc = dc;
    dc.onopen = () => renderButtons();
    dc.onmessage = (e) => {
      let r;
      try {
        r = JSON.parse(e.data);
      } catch (err) {
        return;
      }
      const w = s.dcWaits.get(r.req);
      if (!w) return;
      s.dcWaits.delete(r.req);
      clearTimeout(w.timer);
      w.resolve(r);
    };
  }

  // command sends a control channel command and resolves with its reply,
  // or null when none came in time.
  function command(s, cmd, value) {
    return new Promise((resolve) => {
      if (!s.dc || s.dc.readyState !== 'open') {
        resolve(null);
        return;
      }
      const req = ++s.dcReq;
      const timer = setTimeout(() => {
        s.dcWaits.delete(req);
        resolve(null);
      }, CONTROL_TIMEOUT_MS);
      s.dcWaits.set(req, {resolve, timer});
      const m = {cmd, req};
      if (value !== undefined) m.value = value;
      s.dc.send(JSON.stringify(m));
    });
  }

  function clock(unix) {
    return new Date(unix * 1000).toLocaleTimeString([], {hour: '2-digit', minute: '2-digit', second: '2-digit'});
  }

  // listDay asks the camera which spans of the day in the date field are
  // recorded and draws them on the 24-hour bar.
  async function listDay() {
    const s = live();
    const day = ui.day.value;
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day);
    if (!s || !m) {
      setStatus('warn', s ? 'Pick a day first.' : 'Connect first: the listing goes over a session.');
      return;
    }
    const r = await command(s, 'playback_query_day', {year: Number(m[1]), month: Number(m[2]), day: Number(m[3])});
    if (!r) {
      setStatus('warn', 'The camera did not answer the recordings query.');
      return;
    }
    if (r.res !== 0) {
      setStatus('warn', r.res === 9 ? REFUSALS['-116'] : `The camera refused the listing: ${r.message || 'res ' + r.res}`);
      return;
    }
    app.dayStart = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3])).getTime() / 1000;
    app.ranges = r.ranges || [];
    drawRanges();
    const total = app.ranges.reduce((n, x) => n + (x.end - x.start), 0);
    log('info', `${app.ranges.length} recorded span(s) on ${day}, ${Math.round(total)} s`);
    if (!app.ranges.length) setStatus('info', `Nothing recorded on ${day}.`);
  }

  function drawRanges() {
    ui.bar.replaceChildren();
    for (const x of app.ranges) {
      const el = document.createElement('div');
      el.className = 'range';
      const from = Math.max(0, (x.start - app.dayStart) / DAY_S);
      const to = Math.min(1, (x.end - app.dayStart) / DAY_S);
      el.style.left = `${from * 100}%`;
      // At least a visible sliver, however short the span.
      el.style.width = `max(3px, ${(to - from) * 100}%)`;
      el.title = `${clock(x.start)} – ${clock(x.end)}`;
      ui.bar.appendChild(el);
    }
  }

  // playAt plays the recording from unix time t: inside a listed span from
  // t, else from the start of the nearest span.
  function playAt(t) {
    let best = null;
    let bestGap = Infinity;
    for (const x of app.ranges) {
      const gap = t < x.start ? x.start - t : (t >= x.end ? t - x.end : 0);
      if (gap < bestGap) {
        best = x;
        bestGap = gap;
      }
    }
    if (!best) {
      setStatus('warn', 'List a day with recordings first.');
      return;
    }
    const start = Math.floor(bestGap === 0 ? t : best.start);
    const end = Math.max(start + 1, Math.floor(best.end));
    startSession(app.stream, {is_replay: 1, start_time: start, end_time: end});
  }

  ui.list.addEventListener('click', () => listDay());
  ui.golive.addEventListener('click', () => startSession(app.stream));
  ui.bar.addEventListener('click', (e) => {
    const rect = ui.bar.getBoundingClientRect();
    const f = Math.min(1, Math.max(0, (e.clientX - rect.left) / rect.width));
    playAt(app.dayStart + f * DAY_S);
  });

  // ------------------------------------------------------------------ stats

  async function pollStats() {
    const s = live();
    if (!s || !s.pc) return;
    let report;
    try {
      report = await s.pc.getStats();
    } catch (e) {
      return;
    }
    if (s.closed) return;
    const now = performance.now();
    const byId = new Map();
    let video = null;
    let audio = null;
    let transport = null;
    report.forEach((r) => {
      byId.set(r.id, r);
      if (r.type === 'inbound-rtp' && r.kind === 'video') video = r;
      else if (r.type === 'inbound-rtp' && r.kind === 'audio') audio = r;
      else if (r.type === 'transport') transport = r;
    });
    let pair = transport && transport.selectedCandidatePairId ? byId.get(transport.selectedCandidatePairId) : null;
    if (!pair) {
      report.forEach((r) => {
        if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r;
      });
    }
    const st = {
      frames: video ? video.framesDecoded || 0 : 0,
      width: video ? video.frameWidth || ui.video.videoWidth : 0,
      height: video ? video.frameHeight || ui.video.videoHeight : 0,
      fps: video && video.framesPerSecond !== undefined ? video.framesPerSecond : null,
      videoBytes: video ? video.bytesReceived || 0 : 0,
      audioBytes: audio ? audio.bytesReceived || 0 : 0,
      packetsLost: (video ? video.packetsLost || 0 : 0) + (audio ? audio.packetsLost || 0 : 0),
      framesDropped: video ? video.framesDropped || 0 : 0,
      kbps: null,
      videoCodec: codecName(byId, video),
      audioCodec: codecName(byId, audio),
      candidate: null,
      candidateType: '',
      rttMs: null,
      ttffMs: s.firstFrameAt ? Math.round(s.firstFrameAt - s.offerAt) : null,
    };
    if (s.prev) {
      const dt = (now - s.prev.at) / 1000;
      if (dt > 0) {
        st.kbps = ((st.videoBytes + st.audioBytes - s.prev.bytes) * 8) / dt / 1000;
        if (st.fps === null) st.fps = (st.frames - s.prev.frames) / dt;
      }
    }
    s.prev = {at: now, bytes: st.videoBytes + st.audioBytes, frames: st.frames};
    if (pair) {
      const l = byId.get(pair.localCandidateId);
      const r = byId.get(pair.remoteCandidateId);
      if (l && r) {
        // As the reference client reports it: the local type, or relay
        // when the camera's side is relayed.
        st.candidateType = r.candidateType === 'relay' ? 'relay' : l.candidateType;
        const addr = (c) => `${c.address || c.ip || '(hidden)'}:${c.port}`;
        st.candidate = `${st.candidateType} (${addr(l)} ↔ ${r.candidateType} ${addr(r)}, ${l.protocol})`;
      }
      if (pair.currentRoundTripTime !== undefined) st.rttMs = pair.currentRoundTripTime * 1000;
    }
    if (st.frames > 0) firstFrame(s);
    if (s.switchedFrom && st.width && `${st.width}x${st.height}` !== s.switchedFrom) {
      s.switchedFrom = '';
      setStatus('ok', `Live: ${app.cfg.dev_id}, ${s.stream} stream.`);
    }
    app.stats = st;
    renderStats(st);
  }

  function codecName(byId, rtp) {
    const c = rtp && rtp.codecId ? byId.get(rtp.codecId) : null;
    if (!c) return '';
    const name = c.mimeType.replace(/^(audio|video)\//, '');
    const m = /profile-level-id=([0-9a-fA-F]+)/.exec(c.sdpFmtpLine || '');
    return m ? `${name} (profile-level-id ${m[1]})` : `${name} ${c.clockRate / 1000} kHz`;
  }

  function renderStats(st) {
    const t = ui.st;
    const dash = '–';
    if (!st) {
      for (const k of ['resolution', 'fps', 'bitrate', 'ttff', 'frames', 'lost', 'candidate', 'rtt', 'vcodec', 'acodec']) {
        t[k].textContent = dash;
      }
      t.state.textContent = 'new';
      return;
    }
    t.resolution.textContent = st.width && st.height ? `${st.width}x${st.height}` : dash;
    t.fps.textContent = st.fps === null ? dash : st.fps.toFixed(1);
    t.bitrate.textContent = st.kbps === null ? dash : `${Math.round(st.kbps)} kbit/s`;
    t.ttff.textContent = st.ttffMs === null ? dash : `${st.ttffMs} ms`;
    t.frames.textContent = String(st.frames);
    t.lost.textContent = `${st.packetsLost} packets / ${st.framesDropped} frames`;
    t.candidate.textContent = st.candidate || dash;
    t.rtt.textContent = st.rttMs === null ? dash : `${st.rttMs.toFixed(1)} ms`;
    t.vcodec.textContent = st.videoCodec || dash;
    t.acodec.textContent = st.audioCodec || dash;
  }

  // -------------------------------------------------------------- controls

  function renderButtons() {
    const s = live();
    ui.main.disabled = !app.ready;
    ui.sub.disabled = !app.ready;
    ui.main.classList.toggle('active', !!s && s.stream === 'main');
    ui.sub.classList.toggle('active', !!s && s.stream === 'sub');
    ui.mute.disabled = false;
    ui.mute.textContent = ui.video.muted ? 'Unmute' : 'Mute';
    ui.connect.disabled = !app.ready;
    ui.connect.textContent = s ? 'Disconnect' : 'Connect';
    ui.list.disabled = !s;
    ui.golive.disabled = !app.ready || !(s && s.replay);
  }

  ui.main.addEventListener('click', () => switchStream('main'));
  ui.sub.addEventListener('click', () => switchStream('sub'));
  ui.mute.addEventListener('click', () => {
    ui.video.muted = !ui.video.muted;
    renderButtons();
    if (!ui.video.muted) play();
  });
  ui.connect.addEventListener('click', () => {
    const s = live();
    if (s) {
      endSession(s, true);
      setStatus('info', 'Disconnected.');
    } else {
      startSession(app.stream);
    }
  });
  window.addEventListener('pagehide', () => {
    const s = live();
    if (s) endSession(s, true);
  });

  // ------------------------------------------------------------------ start

  window.ipcweb = {
    get pc() {
      return app.session ? app.session.pc : null;
    },
    get session() {
      return app.session ? app.session.id : '';
    },
    get stats() {
      return app.stats;
    },
    get from() {
      return app.from;
    },
    get ranges() {
      return app.ranges;
    },
    get replay() {
      return app.session ? app.session.replay : null;
    },
    switchStream,
  };

  async function start() {
    let cfg;
    try {
      const r = await fetch('config.json', {cache: 'no-store'});
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      cfg = await r.json();
    } catch (e) {
      setStatus('error', `Cannot load config.json from ipcapp web: ${e.message}`);
      return;
    }
    app.cfg = cfg;
    app.from = cfg.from || `ipcweb-${randomHex(4)}`;
    app.stream = cfg.stream === 'sub' ? 'sub' : 'main';
    const now = new Date();
    ui.day.value = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}-${String(now.getDate()).padStart(2, '0')}`;
    ui.device.textContent = `${cfg.dev_id} via ${cfg.broker}`;
    renderButtons();
    if (typeof mqtt === 'undefined') {
      setStatus('error', 'The MQTT library (vendor/mqtt.min.js) did not load.');
      return;
    }
    if (typeof RTCPeerConnection === 'undefined') {
      setStatus('error', 'This browser has no WebRTC (RTCPeerConnection).');
      return;
    }
    setInterval(pollStats, 1000);
    connectBroker();
  }

  start();
})();
