// OnAir Express for the web: join an OnAir room from a browser, publish the
// camera and play any stream. One ES module, no dependencies, no build step.
//
//   import { createEngine } from "/sdk/onair-express.js";
//   const zg = createEngine({ appID: 1234567890 });      // server: the page's origin
//   zg.on("roomStreamUpdate", async (roomID, updateType, streams) => {
//     if (updateType === "ADD") video.srcObject = await zg.startPlayingStream(streams[0].streamID);
//   });
//   await zg.loginRoom("room-1", token, { userID: "u1", userName: "Ann" }, { userUpdate: true });
//   const cam = await zg.createStream({ camera: { video: true, audio: true } });
//   await zg.startPublishingStream("cam-u1", cam);
//
// The names follow the vendor's web engine. Signalling is OnAir's REST API on
// the gateway (room events are one newline-delimited JSON stream, resumed
// from the last revision when it breaks), media is WebRTC through WHIP and
// WHEP. A publisher is bound to the page's room session, so publishing never
// logs the user in a second time.

const VERSION = "0.1.0";

/** Room state change reasons, as the vendor names them. */
export const RoomStateChangedReason = Object.freeze({
  LOGINING: "LOGINING",
  LOGINED: "LOGINED",
  LOGIN_FAILED: "LOGIN_FAILED",
  RECONNECTING: "RECONNECTING",
  RECONNECTED: "RECONNECTED",
  RECONNECT_FAILED: "RECONNECT_FAILED",
  KICKOUT: "KICKOUT",
  LOGOUT: "LOGOUT",
  LOGOUT_FAILED: "LOGOUT_FAILED",
});

/** Publisher states. */
export const PublisherState = Object.freeze({
  NO_PUBLISH: "NO_PUBLISH",
  PUBLISH_REQUESTING: "PUBLISH_REQUESTING",
  PUBLISHING: "PUBLISHING",
});

/** Player states. */
export const PlayerState = Object.freeze({
  NO_PLAY: "NO_PLAY",
  PLAY_REQUESTING: "PLAY_REQUESTING",
  PLAYING: "PLAYING",
});

/** Error codes the SDK itself reports (the server's come through as they are). */
export const ErrorCode = Object.freeze({
  INVALID_PARAMETER: 1000002,
  NOT_LOGGED_IN: 1002002,
  LOGGED_IN_TWICE: 1002001,
  CONNECT_FAILED: 1002030,
  CONNECTION_BROKEN: 1002051,
  RECONNECT_GAVE_UP: 1002053,
  SESSION_NOT_FOUND: 1002083,
  ALREADY_PUBLISHING: 1003023,
  PUBLISH_FAILED: 1003002,
  STREAM_NOT_FOUND: 1004002,
  PLAY_FAILED: 1004001,
  DEVICE_ERROR: 1103061,
});

/** An error with the vendor's numeric code. */
export class OnAirError extends Error {
  constructor(code, message, status) {
    super(message);
    this.name = "OnAirError";
    this.code = code;
    this.msg = message;
    if (status) this.status = status;
  }
}

const RECONNECT_GIVE_UP_MS = 20 * 60 * 1000;
const QUALITY_INTERVAL_MS = 3000;

/** Video layers a player can ask for: auto follows its bandwidth. */
export const VideoLayer = Object.freeze({ AUTO: "auto", HIGH: "high", MEDIUM: "medium", LOW: "low" });

// SIMULCAST is what camera publishing sends when the picture is above
// 360p: three layers (RIDs as browsers name them, lowest first), each a
// scaled copy with its own bitrate cap, so that the edge can give every
// player the one its link carries.
const SIMULCAST = Object.freeze([
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 600_000 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 2_500_000 },
]);
const SIMULCAST_MIN_SIDE = 360;

// The edge's names of a player's video layer (media.v1.VideoLayer).
const LAYER_OF_EDGE = Object.freeze({
  VIDEO_LAYER_LOW: "low", VIDEO_LAYER_MEDIUM: "medium", VIDEO_LAYER_HIGH: "high",
});

/**
 * createEngine returns an engine for one AppID. server is the gateway's base
 * URL ("https://onair.example.com"); the page's origin when left out.
 */
export function createEngine(config) {
  return new ExpressEngine(config);
}

export class ExpressEngine {
  constructor({ appID, server } = {}) {
    appID = Number(appID);
    if (!Number.isInteger(appID) || appID <= 0 || appID > 0xffffffff) {
      throw new OnAirError(ErrorCode.INVALID_PARAMETER, "appID must be a positive 32-bit number");
    }
    this.appID = appID;
    this.server = String(server || globalThis.location?.origin || "").replace(/\/+$/, "");
    this._handlers = new Map();
    this._room = null;
    this._publishers = new Map();
    this._players = new Map();
    this._dualStream = new WeakMap();
    this._destroyed = false;
  }

  /** getVersion returns the SDK's version. */
  getVersion() {
    return VERSION;
  }

  /** on registers handler for event; it returns true. */
  on(event, handler) {
    if (typeof handler !== "function") return false;
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(handler);
    return true;
  }

  /** off removes handler (every handler of event when it is left out). */
  off(event, handler) {
    const set = this._handlers.get(event);
    if (!set) return false;
    if (handler) set.delete(handler);
    else set.clear();
    return true;
  }

  _emit(event, ...args) {
    const set = this._handlers.get(event);
    if (!set) return;
    for (const h of [...set]) {
      try {
        h(...args);
      } catch (e) {
        console.error(`onair-express: ${event} handler threw`, e);
      }
    }
  }

  // ---- HTTP ----

  async _fetch(path, { method = "GET", body, headers = {}, signal } = {}) {
    let resp;
    try {
      resp = await fetch(this.server + path, {
        method,
        headers: body !== undefined ? { "Content-Type": "application/json", ...headers } : headers,
        body: body !== undefined ? JSON.stringify(body) : undefined,
        signal,
        cache: "no-store",
      });
    } catch (e) {
      if (e?.name === "AbortError") throw e;
      throw new OnAirError(ErrorCode.CONNECT_FAILED, `cannot reach ${this.server || "the server"}: ${e?.message || e}`);
    }
    const text = await resp.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      json = null;
    }
    if (!resp.ok) throw httpError(resp, json, text);
    return json ?? {};
  }

  // ---- room ----

  /**
   * loginRoom logs user into roomID with a Token04 token. It resolves true
   * once logged in, and rejects with an OnAirError (code, message) that
   * roomStateChanged also reports as LOGIN_FAILED.
   */
  async loginRoom(roomID, token, user, config = {}) {
    this._alive();
    if (this._room) {
      throw new OnAirError(ErrorCode.LOGGED_IN_TWICE, `already logged into room ${this._room.roomID}: log out first`);
    }
    const room = new RoomSession(this, String(roomID ?? ""), String(token ?? ""), {
      userID: String(user?.userID ?? ""),
      userName: String(user?.userName || user?.userID || ""),
    }, config);
    this._room = room;
    this._emit("roomStateChanged", room.roomID, RoomStateChangedReason.LOGINING, 0, "{}");
    try {
      await room.login();
    } catch (e) {
      if (this._room === room) this._room = null;
      const err = asOnAirError(e);
      this._emit("roomStateChanged", room.roomID, RoomStateChangedReason.LOGIN_FAILED, err.code, "{}");
      throw err;
    }
    this._emit("roomStateChanged", room.roomID, RoomStateChangedReason.LOGINED, 0,
      JSON.stringify({ room_session_id: room.roomSessionID }));
    room.start();
    // Logged in means receiving: room messages sent once loginRoom has
    // resolved reach this user (the server delivers them to open streams).
    await room.waitOpen(5000);
    return true;
  }

  /** logoutRoom leaves the room (the one logged into when roomID is left out). */
  async logoutRoom(roomID) {
    const room = this._room;
    if (!room || (roomID !== undefined && roomID !== room.roomID)) return;
    for (const id of [...this._publishers.keys()]) await this.stopPublishingStream(id);
    this._room = null;
    try {
      await room.logout();
      this._emit("roomStateChanged", room.roomID, RoomStateChangedReason.LOGOUT, 0, "{}");
    } catch (e) {
      const err = asOnAirError(e);
      this._emit("roomStateChanged", room.roomID, RoomStateChangedReason.LOGOUT_FAILED, err.code, "{}");
    }
  }

  /** renewToken gives the room session a new token before the old one expires. */
  async renewToken(token, roomID) {
    const room = this._requireRoom(roomID);
    await this._fetch(`/v1/sessions/${enc(room.sessionID)}:renewToken`, { method: "POST", body: { token } });
    room.token = token;
    return true;
  }

  /** setRoomExtraInfo sets a key of the room's extra info. */
  async setRoomExtraInfo(roomID, key, value) {
    const room = this._requireRoom(roomID);
    await this._fetch(`/v1/sessions/${enc(room.sessionID)}/extra-info`, {
      method: "POST", body: { key: String(key), value: String(value) },
    });
    return { errorCode: 0 };
  }

  /** sendBroadcastMessage sends a message to everyone in the room but the sender. */
  async sendBroadcastMessage(roomID, message) {
    const room = this._requireRoom(roomID);
    const r = await this._fetch(`/v1/sessions/${enc(room.sessionID)}/messages`, {
      method: "POST", body: { kind: "MESSAGE_KIND_BROADCAST", content: String(message) },
    });
    return { errorCode: 0, messageID: r.message_id };
  }

  /** sendCustomCommand sends a command to some users of the room (everyone but the sender when toUserIDs is empty). */
  async sendCustomCommand(roomID, command, toUserIDs = []) {
    const room = this._requireRoom(roomID);
    await this._fetch(`/v1/sessions/${enc(room.sessionID)}/messages`, {
      method: "POST", body: { kind: "MESSAGE_KIND_CUSTOM_COMMAND", content: String(command), to_user_ids: toUserIDs },
    });
    return { errorCode: 0 };
  }

  /** setStreamExtraInfo changes the extra info of a stream this page publishes. */
  async setStreamExtraInfo(streamID, extraInfo) {
    const room = this._requireRoom();
    await this._fetch(`/v1/sessions/${enc(room.sessionID)}/streams/${enc(streamID)}:setExtraInfo`, {
      method: "POST", body: { extra_info: String(extraInfo) },
    });
    const p = this._publishers.get(streamID);
    if (p) p.extraInfo = String(extraInfo);
    return { errorCode: 0 };
  }

  _requireRoom(roomID) {
    const room = this._room;
    if (!room || !room.sessionID || (roomID !== undefined && roomID !== room.roomID)) {
      throw new OnAirError(ErrorCode.NOT_LOGGED_IN, roomID ? `not logged into room ${roomID}` : "not logged into a room");
    }
    return room;
  }

  _alive() {
    if (this._destroyed) throw new OnAirError(ErrorCode.INVALID_PARAMETER, "the engine was destroyed");
  }

  // ---- media ----

  /** createStream opens the camera and microphone (fake devices in tests). */
  async createStream(source = { camera: { video: true, audio: true } }) {
    const cam = source?.camera ?? { video: true, audio: true };
    const constraints = {
      video: cam.video === undefined ? true : cam.video,
      audio: cam.audio === undefined ? true : cam.audio,
    };
    try {
      return await navigator.mediaDevices.getUserMedia(constraints);
    } catch (e) {
      throw new OnAirError(ErrorCode.DEVICE_ERROR, `cannot open the camera or microphone: ${e?.message || e}`);
    }
  }

  /**
   * enableDualStream turns layered (simulcast) publishing of stream on or
   * off, as the vendor's call of that name does; it takes effect at the
   * next startPublishingStream. It is on by default: a camera above 360p
   * is sent as three layers (full, half and quarter size).
   */
  enableDualStream(stream, enable) {
    if (!stream?.getTracks) return false;
    this._dualStream.set(stream, !!enable);
    return true;
  }

  /** destroyStream stops every track of a stream from createStream. */
  destroyStream(stream) {
    for (const t of stream?.getTracks?.() ?? []) t.stop();
  }

  /**
   * startPublishingStream publishes mediaStream as streamID in the room this
   * page is logged into (WHIP, bound to the room session). It resolves true
   * once the edge answered; publisherStateUpdate tells the rest, and a
   * broken connection is retried.
   */
  async startPublishingStream(streamID, mediaStream, config = {}) {
    this._alive();
    const room = this._requireRoom();
    if (this._publishers.has(streamID)) {
      throw new OnAirError(ErrorCode.ALREADY_PUBLISHING, `stream ${streamID} is already being published`);
    }
    if (!mediaStream?.getTracks?.().length) {
      throw new OnAirError(ErrorCode.INVALID_PARAMETER, "startPublishingStream needs a MediaStream with tracks");
    }
    const dual = config.enableDualStream ?? this._dualStream.get(mediaStream) ?? true;
    const pub = new Publisher(this, room, String(streamID), mediaStream, String(config.extraInfo ?? ""), !!dual);
    this._publishers.set(pub.streamID, pub);
    try {
      await pub.start();
    } catch (e) {
      this._publishers.delete(pub.streamID);
      throw asOnAirError(e);
    }
    return true;
  }

  /** stopPublishingStream stops publishing streamID. */
  async stopPublishingStream(streamID) {
    const pub = this._publishers.get(streamID);
    if (!pub) return false;
    this._publishers.delete(streamID);
    await pub.stop();
    return true;
  }

  /**
   * startPlayingStream plays streamID (WHEP) and resolves its MediaStream.
   * options.videoLayer picks the layer of a simulcast stream: "auto" (the
   * default: what the player's bandwidth carries), "high", "medium" or
   * "low". It rejects with code 1004002 when the stream is not live.
   */
  async startPlayingStream(streamID, options = {}) {
    this._alive();
    const token = options.token ?? this._room?.token;
    if (!token) throw new OnAirError(ErrorCode.NOT_LOGGED_IN, "log into a room (or pass options.token) before playing");
    const layer = String(options.videoLayer ?? VideoLayer.AUTO);
    if (!Object.values(VideoLayer).includes(layer)) {
      throw new OnAirError(ErrorCode.INVALID_PARAMETER, `videoLayer ${JSON.stringify(layer)}: want auto, high, medium or low`);
    }
    const old = this._players.get(streamID);
    if (old) await this.stopPlayingStream(streamID);
    const player = new Player(this, String(streamID), token, layer);
    this._players.set(player.streamID, player);
    try {
      return await player.start();
    } catch (e) {
      if (this._players.get(player.streamID) === player) this._players.delete(player.streamID);
      throw asOnAirError(e);
    }
  }

  /** stopPlayingStream stops playing streamID. */
  async stopPlayingStream(streamID) {
    const player = this._players.get(streamID);
    if (!player) return false;
    this._players.delete(streamID);
    await player.stop(0);
    return true;
  }

  /** destroyEngine stops everything and logs out. */
  async destroyEngine() {
    if (this._destroyed) return;
    for (const id of [...this._players.keys()]) await this.stopPlayingStream(id);
    await this.logoutRoom();
    this._destroyed = true;
    this._handlers.clear();
  }

  // A stream of the room ended: its player goes to NO_PLAY.
  _streamDeleted(streamID) {
    const player = this._players.get(streamID);
    if (player) {
      this._players.delete(streamID);
      player.stop(0);
    }
  }
}

// ---- the room session: login, heartbeats, the event stream ----

class RoomSession {
  constructor(engine, roomID, token, user, config) {
    this.e = engine;
    this.roomID = roomID;
    this.token = token;
    this.user = user;
    this.userUpdate = !!config.userUpdate;
    this.maxMemberCount = config.maxMemberCount ?? 0;
    this.sessionID = "";
    this.roomSessionID = "";
    this.lastRev = 0;
    this.users = new Map();
    this.streams = new Map();
    this.loggedIn = false;
    this.stopped = false;
    this.abort = null;
    this.heartbeatMs = 10000;
    this.timer = null;
    // opened resolves when the first event stream delivers its first event:
    // the server has the stream and sends it every later room message.
    this.opened = new Promise((resolve) => { this.markOpen = resolve; });
  }

  // waitOpen resolves once the event stream is open, or after ms.
  waitOpen(ms) {
    let t;
    return Promise.race([this.opened, new Promise((resolve) => { t = setTimeout(resolve, ms); })])
      .finally(() => clearTimeout(t));
  }

  async login() {
    if (!this.roomID) throw new OnAirError(1002011, "roomID is empty");
    if (!this.user.userID) throw new OnAirError(1002005, "userID is empty");
    if (!this.token) throw new OnAirError(1002067, "no token: pass the Token04 token your server minted");
    // One attempt ID for every try: a try whose reply was lost is found
    // by the next, not repeated. A login that fails after a try that may
    // have made the session removes it in the background.
    const attempt = attemptID();
    let mayExist = false;
    let r;
    try {
      r = await retrying(RETRY_BOUND_MS, async () => {
        try {
          return await this.e._fetch(`/v1/rooms/${enc(this.roomID)}:login`, {
            method: "POST",
            body: {
              app_id: this.e.appID,
              user: { user_id: this.user.userID, user_name: this.user.userName },
              token: this.token,
              config: { is_user_status_notify: this.userUpdate, max_member_count: this.maxMemberCount },
              attempt_id: attempt,
            },
          });
        } catch (e) {
          if (isTransient(e)) mayExist = true;
          throw e;
        }
      });
    } catch (e) {
      if (mayExist) {
        logoutRetrying(this.e, "-", CLEANUP_BOUND_MS, { app_id: this.e.appID, user_id: this.user.userID, attempt_id: attempt })
          .catch(() => {});
      }
      throw e;
    }
    this.sessionID = r.session_id;
    this.roomSessionID = r.room_session_id;
    this.heartbeatMs = Number(r.heartbeat_interval_ms) || 10000;
    // A fresh session starts with a snapshot, reconciled with what the
    // handlers were told.
    this.lastRev = 0;
  }

  start() {
    this.runEvents();
    this.timer = setInterval(() => this.heartbeat(), this.heartbeatMs);
  }

  async heartbeat() {
    if (this.stopped) return;
    try {
      await this.e._fetch(`/v1/sessions/${enc(this.sessionID)}:heartbeat`, { method: "POST", body: {} });
    } catch {
      // The event stream notices a lost session and recovers.
    }
  }

  // logout ends the session, riding through UNAVAILABLE; one that still
  // fails goes on in the background for a while, so the user does not stay
  // in the room until the heartbeat timeout.
  async logout() {
    this.close();
    try {
      await logoutRetrying(this.e, this.sessionID, RETRY_BOUND_MS, {});
    } catch (e) {
      if (isTransient(e)) logoutRetrying(this.e, this.sessionID, CLEANUP_BOUND_MS, {}).catch(() => {});
      throw e;
    }
  }

  close() {
    this.stopped = true;
    clearInterval(this.timer);
    this.abort?.abort();
  }

  // runEvents keeps the event stream open, resuming after the last complete
  // revision whenever it breaks, until the session ends.
  async runEvents() {
    let brokenSince = 0;
    let backoff = 100;
    while (!this.stopped) {
      let err;
      try {
        await this.subscribe(() => {
          this.markOpen();
          if (brokenSince) {
            brokenSince = 0;
            backoff = 100;
            this.e._emit("roomStateChanged", this.roomID, RoomStateChangedReason.RECONNECTED, 0, "{}");
          }
        });
        err = new OnAirError(ErrorCode.CONNECTION_BROKEN, "the event stream ended");
      } catch (e) {
        err = e;
      }
      if (this.stopped) return;
      if (err instanceof SessionOver) {
        this.end();
        return;
      }
      if (!brokenSince) {
        brokenSince = Date.now();
        this.e._emit("roomStateChanged", this.roomID, RoomStateChangedReason.RECONNECTING, ErrorCode.CONNECTION_BROKEN, "{}");
      }
      if (Date.now() - brokenSince > RECONNECT_GIVE_UP_MS) {
        this.giveUp(ErrorCode.RECONNECT_GAVE_UP);
        return;
      }
      if (err?.code === ErrorCode.SESSION_NOT_FOUND) {
        // The server dropped the session (away past the heartbeat timeout):
        // log in again and reconcile from a snapshot.
        try {
          await this.login();
        } catch (e) {
          const code = asOnAirError(e).code;
          if (code !== 1000037 && code !== ErrorCode.CONNECT_FAILED) {
            this.giveUp(code);
            return;
          }
        }
      }
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 2000);
    }
  }

  giveUp(code) {
    this.e._emit("roomStateChanged", this.roomID, RoomStateChangedReason.RECONNECT_FAILED, code, "{}");
    this.end();
  }

  end() {
    this.close();
    if (this.e._room === this) this.e._room = null;
    for (const id of [...this.e._publishers.keys()]) this.e.stopPublishingStream(id);
  }

  async subscribe(connected) {
    this.abort = new AbortController();
    const path = `/v1/sessions/${enc(this.sessionID)}/events?from_revision=${this.lastRev}`;
    let resp;
    try {
      resp = await fetch(this.e.server + path, { signal: this.abort.signal, cache: "no-store" });
    } catch (e) {
      throw new OnAirError(ErrorCode.CONNECTION_BROKEN, `event stream: ${e?.message || e}`);
    }
    if (!resp.ok) {
      const text = await resp.text().catch(() => "");
      let json = null;
      try {
        json = JSON.parse(text.split("\n")[0]);
      } catch { /* not JSON */ }
      throw httpError(resp, json?.error ?? json, text);
    }
    let first = true;
    await readLines(resp, (msg) => {
      if (msg.error) throw errorFromJSON(msg.error);
      const ev = msg.result;
      if (!ev) return;
      if (first) {
        first = false;
        connected();
      }
      if (this.stopped) return false;
      this.handle(ev);
      const rev = Number(ev.revision || 0);
      if (!ev.more && rev > 0) this.lastRev = Math.max(this.lastRev, rev);
    }, "event stream");
  }

  handle(ev) {
    const room = this.roomID;
    const e = this.e;
    if (ev.snapshot) {
      this.reconcile(ev.snapshot);
    } else if (ev.user_update) {
      const users = (ev.user_update.users ?? []).map(fromUser);
      if (ev.user_update.update_type === "UPDATE_TYPE_DELETE") this.deleteUsers(users);
      else this.addUsers(users);
    } else if (ev.stream_update) {
      const u = ev.stream_update;
      const streams = (u.streams ?? []).map(fromStream);
      if (u.update_type === "UPDATE_TYPE_DELETE") this.deleteStreams(streams, u.extended_data);
      else this.addStreams(streams);
    } else if (ev.stream_extra_info_update) {
      const changed = [];
      for (const s of (ev.stream_extra_info_update.streams ?? []).map(fromStream)) {
        if (this.streams.has(s.streamID)) {
          this.streams.set(s.streamID, s);
          changed.push(s);
        }
      }
      if (changed.length) e._emit("roomStreamExtraInfoUpdate", room, changed);
    } else if (ev.room_extra_info_update) {
      e._emit("roomExtraInfoUpdate", room, (ev.room_extra_info_update.extra_info ?? []).map(fromExtraInfo));
    } else if (ev.message) {
      const m = ev.message;
      const from = fromUser(m.from_user ?? {});
      if (m.kind === "MESSAGE_KIND_CUSTOM_COMMAND") {
        e._emit("IMRecvCustomCommand", room, from, m.content);
      } else if (m.kind === "MESSAGE_KIND_BARRAGE") {
        e._emit("IMRecvBarrageMessage", room, [{ message: m.content, messageID: m.message_id, sendTime: Number(m.send_time_ms), fromUser: from }]);
      } else {
        e._emit("IMRecvBroadcastMessage", room, [{ message: m.content, messageID: m.message_id, sendTime: Number(m.send_time_ms), fromUser: from }]);
      }
    } else if (ev.online_count) {
      e._emit("roomOnlineUserCountUpdate", room, Number(ev.online_count.count || 0));
    } else if (ev.session_state) {
      const st = ev.session_state;
      if (st.kind === "KIND_KICKED_OUT") {
        e._emit("roomStateChanged", room, RoomStateChangedReason.KICKOUT, Number(st.error_code || 0), "{}");
        throw new SessionOver();
      }
      if (st.kind === "KIND_TOKEN_WILL_EXPIRE") {
        const remain = Math.max(0, Math.round(Number(st.token_expire_unix || 0) - Date.now() / 1000));
        e._emit("tokenWillExpire", room, remain);
      }
    }
  }

  // reconcile applies a snapshot: the first lists what exists; after a
  // broken resume it reports exactly the differences.
  reconcile(snap) {
    const users = (snap.users ?? []).map(fromUser).sort(byKey("userID"));
    const streams = (snap.streams ?? []).map(fromStream).sort(byKey("streamID"));
    const liveStreams = new Set(streams.map((s) => s.streamID));
    this.deleteStreams([...this.streams.values()].filter((s) => !liveStreams.has(s.streamID)).sort(byKey("streamID")), "");
    if (this.userUpdate) {
      const present = new Set(users.map((u) => u.userID));
      this.deleteUsers([...this.users.values()].filter((u) => !present.has(u.userID)).sort(byKey("userID")));
      this.addUsers(users);
    }
    this.addStreams(streams);
    if (!this.loggedIn) {
      this.loggedIn = true;
      const infos = Object.values(snap.extra_info ?? {});
      if (infos.length) this.e._emit("roomExtraInfoUpdate", this.roomID, infos.map(fromExtraInfo));
      if (snap.online_count) this.e._emit("roomOnlineUserCountUpdate", this.roomID, Number(snap.online_count));
    }
  }

  addUsers(users) {
    const out = users.filter((u) => u.userID !== this.user.userID && !this.users.has(u.userID));
    for (const u of out) this.users.set(u.userID, u);
    if (out.length) this.e._emit("roomUserUpdate", this.roomID, "ADD", out);
  }

  deleteUsers(users) {
    const out = users.filter((u) => this.users.has(u.userID));
    for (const u of out) this.users.delete(u.userID);
    if (out.length) this.e._emit("roomUserUpdate", this.roomID, "DELETE", out);
  }

  addStreams(streams) {
    const out = streams.filter((s) => s.user.userID !== this.user.userID && !this.streams.has(s.streamID));
    for (const s of out) this.streams.set(s.streamID, s);
    if (out.length) this.e._emit("roomStreamUpdate", this.roomID, "ADD", out, "{}");
  }

  deleteStreams(streams, extended) {
    const out = streams.filter((s) => this.streams.has(s.streamID));
    if (!out.length) return;
    for (const s of out) this.streams.delete(s.streamID);
    if (!extended || extended === "{}") {
      extended = JSON.stringify({ stream_delete_reason: out.map((s) => ({ stream_id: s.streamID, code: 1 })) });
    }
    this.e._emit("roomStreamUpdate", this.roomID, "DELETE", out, extended);
    for (const s of out) this.e._streamDeleted(s.streamID);
  }
}

class SessionOver extends Error {}

// ---- WebRTC over WHIP / WHEP ----

// negotiate sends a complete offer (every candidate gathered: the edge
// takes no trickle) and applies the answer; it returns the session URL.
async function negotiate(engine, pc, url, token) {
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await gathered(pc, 3000);
  let resp;
  try {
    resp = await fetch(engine.server + url, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
      body: pc.localDescription.sdp,
      cache: "no-store",
    });
  } catch (e) {
    throw new OnAirError(ErrorCode.CONNECT_FAILED, `cannot reach ${engine.server || "the server"}: ${e?.message || e}`);
  }
  const text = await resp.text();
  if (resp.status !== 201) throw whipError(resp, text);
  await pc.setRemoteDescription({ type: "answer", sdp: text });
  const loc = resp.headers.get("Location") || "";
  return loc ? new URL(loc, engine.server + url).pathname : "";
}

// preferVP8 offers VP8 first: every OnAir player (the Go SDK's frame sink,
// WHEP clients) takes it.
function preferVP8(transceiver) {
  const caps = globalThis.RTCRtpSender?.getCapabilities?.("video");
  if (!caps || !transceiver.setCodecPreferences) return;
  const rank = (c) => (/\/vp8$/i.test(c.mimeType) ? 0 : /\/(rtx|red|ulpfec)$/i.test(c.mimeType) ? 1 : 2);
  try {
    transceiver.setCodecPreferences([...caps.codecs].sort((a, b) => rank(a) - rank(b)));
  } catch {
    // Keep the browser's order.
  }
}

function gathered(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(done, timeoutMs);
    function done() {
      clearTimeout(t);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === "complete") done();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

async function endSession(engine, location) {
  if (!location) return;
  try {
    await fetch(engine.server + location, { method: "DELETE", cache: "no-store" });
  } catch {
    // The edge ends a session whose peer is gone by itself.
  }
}

// watchConnection calls onBroken once when pc fails, or stays disconnected
// for a few seconds.
function watchConnection(pc, onConnected, onBroken) {
  let timer = null;
  let done = false;
  const broken = () => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    onBroken();
  };
  pc.addEventListener("connectionstatechange", () => {
    switch (pc.connectionState) {
      case "connected":
        clearTimeout(timer);
        timer = null;
        onConnected();
        break;
      case "disconnected":
        if (!timer) timer = setTimeout(broken, 4000);
        break;
      case "failed":
      case "closed":
        broken();
        break;
    }
  });
}

class Publisher {
  constructor(engine, room, streamID, mediaStream, extraInfo, dualStream) {
    this.e = engine;
    this.room = room;
    this.streamID = streamID;
    this.media = mediaStream;
    this.extraInfo = extraInfo;
    this.dualStream = dualStream;
    this.pc = null;
    this.location = "";
    this.state = PublisherState.NO_PUBLISH;
    this.stopped = false;
    this.quality = null;
  }

  setState(state, errorCode = 0) {
    if (this.state === state && !errorCode) return;
    this.state = state;
    this.e._emit("publisherStateUpdate", { state, streamID: this.streamID, errorCode, extendedData: "{}" });
  }

  async start() {
    this.setState(PublisherState.PUBLISH_REQUESTING);
    try {
      await this.connect();
    } catch (e) {
      const err = asOnAirError(e);
      this.stopped = true;
      this.close();
      this.setState(PublisherState.NO_PUBLISH, err.code || ErrorCode.PUBLISH_FAILED);
      throw err;
    }
    this.quality = setInterval(() => this.report(), QUALITY_INTERVAL_MS);
  }

  async connect() {
    const pc = new RTCPeerConnection();
    this.pc = pc;
    for (const track of this.media.getTracks()) {
      const init = { direction: "sendonly", streams: [this.media] };
      if (track.kind === "video" && this.dualStream && aboveSimulcastSize(track)) {
        init.sendEncodings = SIMULCAST.map((e) => ({ ...e }));
      }
      const tr = pc.addTransceiver(track, init);
      if (track.kind === "video") preferVP8(tr);
    }
    watchConnection(pc, () => {
      if (this.pc === pc && !this.stopped) this.setState(PublisherState.PUBLISHING);
    }, () => {
      if (this.pc === pc && !this.stopped) this.retry();
    });
    const q = new URLSearchParams({ session_id: this.room.sessionID });
    if (this.extraInfo) q.set("extra_info", this.extraInfo);
    const url = `/whip/${this.e.appID}/${enc(this.room.roomID)}/${enc(this.streamID)}?${q}`;
    this.location = await negotiate(this.e, pc, url, this.room.token);
  }

  // retry publishes again after the edge or the connection broke.
  async retry() {
    this.close();
    this.setState(PublisherState.PUBLISH_REQUESTING, ErrorCode.CONNECTION_BROKEN);
    let backoff = 500;
    const since = Date.now();
    while (!this.stopped) {
      await sleep(backoff);
      if (this.stopped) return;
      try {
        this.room = this.e._room ?? this.room;
        await this.connect();
        return;
      } catch (e) {
        this.close();
        const code = asOnAirError(e).code;
        const transient = code === ErrorCode.CONNECT_FAILED || code === 1000037 || code === 1003028 || code === 1002083;
        if (!transient || Date.now() - since > 60000) {
          this.stopped = true;
          clearInterval(this.quality);
          this.e._publishers.delete(this.streamID);
          this.setState(PublisherState.NO_PUBLISH, code || ErrorCode.PUBLISH_FAILED);
          return;
        }
      }
      backoff = Math.min(backoff * 2, 4000);
    }
  }

  close() {
    const loc = this.location;
    this.location = "";
    endSession(this.e, loc);
    this.pc?.close();
    this.pc = null;
  }

  async stop() {
    this.stopped = true;
    clearInterval(this.quality);
    const loc = this.location;
    this.location = "";
    // DELETE first, so that the room is told the stream stopped (reason 1)
    // rather than that its connection was lost.
    await endSession(this.e, loc);
    this.pc?.close();
    this.pc = null;
    this.setState(PublisherState.NO_PUBLISH);
  }

  async report() {
    if (!this.pc || this.state !== PublisherState.PUBLISHING) return;
    const q = await quality(this.pc, "outbound-rtp", this.last);
    this.last = q.raw;
    this.e._emit("publishQualityUpdate", this.streamID, q.stats);
  }
}

class Player {
  constructor(engine, streamID, token, videoLayer) {
    this.e = engine;
    this.streamID = streamID;
    this.token = token;
    this.videoLayer = videoLayer;
    // What the edge last said of this player's video: the layer it gets
    // ("" before it says, or for a stream without layers) and whether it
    // is paused because even the lowest layer does not fit the link.
    this.layer = "";
    this.paused = false;
    this.watch = null;
    this.pc = null;
    this.location = "";
    this.media = new MediaStream();
    this.state = PlayerState.NO_PLAY;
    this.stopped = false;
    this.firstFrame = false;
    this.timers = [];
  }

  setState(state, errorCode = 0) {
    if (this.state === state && !errorCode) return;
    this.state = state;
    this.e._emit("playerStateUpdate", { state, streamID: this.streamID, errorCode, extendedData: "{}" });
  }

  async start() {
    this.setState(PlayerState.PLAY_REQUESTING);
    try {
      await this.connect();
    } catch (e) {
      const err = asOnAirError(e);
      this.stopped = true;
      this.close();
      this.setState(PlayerState.NO_PLAY, err.code || ErrorCode.PLAY_FAILED);
      throw err;
    }
    this.timers.push(setInterval(() => this.report(), QUALITY_INTERVAL_MS));
    this.timers.push(setInterval(() => this.checkFirstFrame(), 100));
    return this.media;
  }

  async connect() {
    const pc = new RTCPeerConnection();
    this.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    pc.addEventListener("track", (ev) => {
      if (this.pc !== pc) return;
      for (const old of this.media.getTracks().filter((t) => t.kind === ev.track.kind)) this.media.removeTrack(old);
      this.media.addTrack(ev.track);
    });
    watchConnection(pc, () => {
      if (this.pc === pc && !this.stopped) this.setState(PlayerState.PLAYING);
    }, () => {
      if (this.pc === pc && !this.stopped) this.retry();
    });
    const q = this.videoLayer === VideoLayer.AUTO ? "" : `?layer=${enc(this.videoLayer)}`;
    this.location = await negotiate(this.e, pc, `/whep/${this.e.appID}/${enc(this.streamID)}${q}`, this.token);
    this.follow(this.location);
  }

  // follow reads the media session's events (GET /v1/media/sessions/{id}/
  // events, the REST face of WatchSession) for the layer the edge sends
  // and whether video is paused, until the session ends or is closed. A
  // WHEP session URL names the media session itself (/whep/sessions/{id})
  // unless the edge is older than session tags; then nothing is followed
  // and the layer stays unknown ("").
  async follow(location) {
    const id = /^\/whep\/sessions\/([^/.]+)$/.exec(location)?.[1];
    if (!id) return;
    const abort = new AbortController();
    this.watch?.abort();
    this.watch = abort;
    let backoff = 250;
    while (!abort.signal.aborted && this.location === location) {
      try {
        const resp = await fetch(`${this.e.server}/v1/media/sessions/${id}/events`, { signal: abort.signal, cache: "no-store" });
        if (!resp.ok) {
          // 404: the session is gone (the player reconnects or stops).
          if (resp.status === 404) return;
          throw new Error(`${resp.status}`);
        }
        await readLines(resp, (msg) => {
          const ev = msg.result;
          if (!ev || this.location !== location) return;
          this.layer = LAYER_OF_EDGE[ev.video_layer] ?? "";
          this.paused = !!ev.video_paused;
          backoff = 250;
        });
        return; // the session ended
      } catch (e) {
        if (abort.signal.aborted) return;
      }
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 4000);
    }
  }

  async retry() {
    this.close();
    this.setState(PlayerState.PLAY_REQUESTING, ErrorCode.CONNECTION_BROKEN);
    let backoff = 500;
    const since = Date.now();
    while (!this.stopped) {
      await sleep(backoff);
      if (this.stopped) return;
      try {
        await this.connect();
        return;
      } catch (e) {
        this.close();
        const code = asOnAirError(e).code;
        const transient = code === ErrorCode.CONNECT_FAILED || code === 1000037 || code === ErrorCode.STREAM_NOT_FOUND;
        if (!transient || Date.now() - since > 10000) {
          this.stop(code || ErrorCode.PLAY_FAILED);
          return;
        }
      }
      backoff = Math.min(backoff * 2, 2000);
    }
  }

  async checkFirstFrame() {
    if (this.firstFrame || !this.pc) return;
    let stats;
    try {
      stats = await this.pc.getStats();
    } catch {
      return;
    }
    for (const s of stats.values()) {
      if (s.type === "inbound-rtp" && s.kind === "video" && s.framesDecoded > 0 && !this.firstFrame) {
        this.firstFrame = true;
        this.e._emit("playerRecvVideoFirstFrame", this.streamID);
      }
    }
  }

  async report() {
    if (!this.pc || this.state !== PlayerState.PLAYING) return;
    const q = await quality(this.pc, "inbound-rtp", this.last);
    this.last = q.raw;
    q.stats.video.videoLayer = this.layer;
    q.stats.video.videoPaused = this.paused;
    this.e._emit("playQualityUpdate", this.streamID, q.stats);
  }

  close() {
    const loc = this.location;
    this.location = "";
    this.watch?.abort();
    this.watch = null;
    this.layer = "";
    this.paused = false;
    endSession(this.e, loc);
    this.pc?.close();
    this.pc = null;
  }

  async stop(errorCode = 0) {
    if (this.stopped && this.state === PlayerState.NO_PLAY) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    if (this.e._players.get(this.streamID) === this) this.e._players.delete(this.streamID);
    this.close();
    this.setState(PlayerState.NO_PLAY, errorCode);
  }
}

// quality reads getStats: kbps and fps since the previous report, packet
// loss, round-trip time, and a level (0 excellent .. 4 bad) from loss and RTT.
async function quality(pc, type, last) {
  const raw = { t: performance.now() };
  let rtt = 0;
  const stats = await pc.getStats();
  for (const s of stats.values()) {
    if (s.type === type && (s.kind === "video" || s.kind === "audio")) {
      // A simulcast publisher has one outbound-rtp per layer: bytes and
      // packets add up; frames and size are the largest layer's.
      const r = raw[s.kind] ?? (raw[s.kind] = { bytes: 0, frames: 0, packets: 0, lost: 0, width: 0, height: 0 });
      r.bytes += s.bytesSent ?? s.bytesReceived ?? 0;
      r.packets += s.packetsSent ?? s.packetsReceived ?? 0;
      r.lost += s.packetsLost ?? 0;
      if ((s.frameWidth ?? 0) >= r.width) {
        r.frames = s.framesEncoded ?? s.framesDecoded ?? 0;
        r.width = s.frameWidth ?? 0;
        r.height = s.frameHeight ?? 0;
      }
    }
    if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) rtt = s.currentRoundTripTime * 1000;
    if (s.type === "remote-inbound-rtp" && s.roundTripTime !== undefined) rtt = Math.max(rtt, s.roundTripTime * 1000);
  }
  const secs = last ? Math.max((raw.t - last.t) / 1000, 0.001) : QUALITY_INTERVAL_MS / 1000;
  const part = (kind) => {
    const now = raw[kind] ?? { bytes: 0, frames: 0, packets: 0, lost: 0, width: 0, height: 0 };
    const was = last?.[kind] ?? { bytes: 0, frames: 0, packets: 0, lost: 0 };
    const packets = Math.max(now.packets - was.packets, 0);
    const lost = Math.max(now.lost - was.lost, 0);
    return {
      kbps: ((now.bytes - was.bytes) * 8) / 1000 / secs,
      fps: (now.frames - was.frames) / secs,
      packetLostRate: packets + lost > 0 ? lost / (packets + lost) : 0,
      width: now.width,
      height: now.height,
    };
  };
  const video = part("video");
  const audio = part("audio");
  const loss = Math.max(video.packetLostRate, audio.packetLostRate);
  const level = loss > 0.2 || rtt > 800 ? 4 : loss > 0.1 || rtt > 400 ? 3 : loss > 0.05 || rtt > 200 ? 2 : loss > 0.01 || rtt > 100 ? 1 : 0;
  return {
    raw,
    stats: {
      video: { videoBitrate: video.kbps, videoFPS: video.fps, videoPacketsLostRate: video.packetLostRate, frameWidth: video.width, frameHeight: video.height },
      audio: { audioBitrate: audio.kbps, audioPacketsLostRate: audio.packetLostRate },
      currentRoundTripTime: rtt,
      level,
    },
  };
}

// ---- helpers ----

// readLines calls onMessage with each JSON line of a newline-delimited
// response (a server-streaming REST call) until it ends, or onMessage
// returns false or throws (what it throws is thrown on).
async function readLines(resp, onMessage, what = "stream") {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        throw new OnAirError(ErrorCode.CONNECTION_BROKEN, `${what}: ${e?.message || e}`);
      }
      if (chunk.done) return;
      buf += decoder.decode(chunk.value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line && onMessage(JSON.parse(line)) === false) return;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// aboveSimulcastSize: the track's picture (its shorter side) is above 360p,
// where three layers are worth their cost; a smaller one is sent as it is.
function aboveSimulcastSize(track) {
  const { width = 0, height = 0 } = track.getSettings?.() ?? {};
  return Math.min(width, height) > SIMULCAST_MIN_SIDE;
}

function enc(s) {
  return encodeURIComponent(s);
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function byKey(k) {
  return (a, b) => (a[k] < b[k] ? -1 : a[k] > b[k] ? 1 : 0);
}

function fromUser(u) {
  return { userID: u.user_id ?? "", userName: u.user_name ?? "" };
}

function fromStream(s) {
  return {
    streamID: s.stream_id ?? "",
    user: { userID: s.user_id ?? "", userName: s.user_name ?? "" },
    extraInfo: s.extra_info ?? "",
    createTime: Number(s.create_time_ms || 0),
  };
}

function fromExtraInfo(x) {
  return { key: x.key ?? "", value: x.value ?? "", updateUser: fromUser(x.update_user ?? {}), updateTime: Number(x.update_time_ms || 0) };
}

// Logins and logouts ride through a server or etcd briefly away (an etcd
// leader election takes a second or two): a call answered 503 / 1000037,
// or not at all, is made again after a short pause, for up to
// RETRY_BOUND_MS (longer than the server's own 5 s wait for a new leader).
// Cleanups after a failed login or logout go on for up to CLEANUP_BOUND_MS,
// past which the server's heartbeat timeout removes the session anyway.
const RETRY_BOUND_MS = 10000;
const CLEANUP_BOUND_MS = 30000;

function isTransient(e) {
  return e?.code === 1000037 || e?.code === ErrorCode.CONNECT_FAILED;
}

async function retrying(boundMs, call) {
  const until = Date.now() + boundMs;
  let pause = 100;
  for (;;) {
    try {
      return await call();
    } catch (e) {
      if (!isTransient(e) || Date.now() + pause > until) throw e;
    }
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(2 * pause, 1000);
  }
}

// logoutRetrying ends a session (or, with session "-" and an attempt ID in
// body, what that login attempt made); a session already gone is done.
async function logoutRetrying(engine, sessionID, boundMs, body) {
  await retrying(boundMs, async () => {
    try {
      await engine._fetch(`/v1/sessions/${enc(sessionID)}:logout`, { method: "POST", body });
    } catch (e) {
      if (e?.code !== ErrorCode.SESSION_NOT_FOUND) throw e;
    }
  });
}

function attemptID() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function errorFromJSON(j) {
  return new OnAirError(Number(j?.code) || 0, String(j?.message ?? "unknown error"), j?.status);
}

function httpError(resp, json, text) {
  if (json && (json.code || json.message)) return errorFromJSON(json);
  return new OnAirError(resp.status === 401 ? 1002033 : resp.status === 503 ? 1000037 : 0,
    `${resp.status} ${resp.statusText}: ${String(text || "").trim()}`);
}

// whipError turns a WHIP/WHEP refusal (plain text, "... (code N)") into an
// OnAirError with that code.
function whipError(resp, text) {
  const m = /\s*\(code (\d+)\)\s*$/.exec(String(text).trim());
  let code = m ? Number(m[1]) : 0;
  if (m) text = String(text).trim().slice(0, m.index);
  if (!code) {
    if (resp.status === 409) code = ErrorCode.STREAM_NOT_FOUND;
    else if (resp.status === 503) code = 1000037;
    else if (resp.status === 401) code = 1003072;
  }
  return new OnAirError(code, String(text).trim() || `${resp.status} ${resp.statusText}`, resp.status);
}

function asOnAirError(e) {
  if (e instanceof OnAirError) return e;
  return new OnAirError(0, String(e?.message ?? e));
}
