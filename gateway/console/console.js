// The OnAir web console: a page on the browser SDK that joins a room, shows
// its users and streams live, publishes the camera and plays any stream.
import { createEngine } from "/sdk/onair-express.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

let engine = null;
let roomID = "";
let camera = null;
let publishing = "";
const tiles = new Map(); // streamID -> tile elements

// ---- small helpers ----

function log(text, isError = false) {
  const li = document.createElement("li");
  li.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  if (isError) li.className = "err";
  const box = $("log");
  box.append(li);
  while (box.children.length > 500) box.firstChild.remove();
  box.scrollTop = box.scrollHeight;
}

// showError shows an error with the vendor's code and message; nothing
// fails silently.
function showError(what, err) {
  const code = err?.code ? ` (code ${err.code})` : "";
  const text = `${what}: ${err?.message ?? err}${code}`;
  $("error").textContent = text;
  $("error").hidden = false;
  log(text, true);
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function setStatus(text, cls = "") {
  $("status").textContent = text;
  $("status").className = `badge ${cls}`;
}

function fmtQuality(s) {
  return `video ${s.video.videoBitrate.toFixed(0)} kbps ${s.video.videoFPS.toFixed(0)} fps` +
    (s.video.frameWidth ? ` ${s.video.frameWidth}x${s.video.frameHeight}` : "") +
    (s.video.videoPaused ? " (video paused: the link is too slow)" : s.video.videoLayer ? ` layer ${s.video.videoLayer}` : "") +
    ` · audio ${s.audio.audioBitrate.toFixed(0)} kbps · rtt ${s.currentRoundTripTime.toFixed(0)} ms · level ${s.level}`;
}

function li(...children) {
  const el = document.createElement("li");
  el.append(...children);
  return el;
}

function span(text, cls = "") {
  const el = document.createElement("span");
  el.textContent = text;
  if (cls) el.className = cls;
  return el;
}

function button(text, onClick, cls = "") {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (cls) b.className = cls;
  b.addEventListener("click", onClick);
  return b;
}

// ---- the room's users and streams ----

const users = new Map();
const streams = new Map();

function renderUsers() {
  const ul = $("users");
  ul.replaceChildren(...[...users.values()].map((u) => {
    const item = li(span(`${u.userName || u.userID}`, "grow"), span(u.userID, "muted"));
    item.dataset.userId = u.userID;
    return item;
  }));
}

function renderStreams() {
  const ul = $("streams");
  ul.replaceChildren(...[...streams.values()].map((s) => {
    const item = li(
      span(s.streamID, "grow"),
      span(s.user.userID + (s.extraInfo ? ` · ${s.extraInfo}` : ""), "muted"),
      button("Play", () => play(s.streamID), "small"),
    );
    item.dataset.streamId = s.streamID;
    return item;
  }));
}

// ---- engine events ----

function wire(e) {
  e.on("roomStateChanged", (room, reason, errorCode, extendedData) => {
    log(`roomStateChanged ${room} ${reason}${errorCode ? ` ${errorCode}` : ""} ${extendedData}`, !!errorCode && reason !== "RECONNECTING");
    switch (reason) {
      case "LOGINING": setStatus("logging in…", "warn"); break;
      case "LOGINED": case "RECONNECTED": setStatus(`in ${room}`, "on"); break;
      case "RECONNECTING": setStatus("reconnecting…", "warn"); break;
      case "KICKOUT": case "RECONNECT_FAILED":
        showError(reason === "KICKOUT" ? "kicked out of the room" : "could not reconnect", { code: errorCode, message: reason });
        left();
        break;
      case "LOGOUT": case "LOGIN_FAILED": setStatus("not logged in"); break;
    }
  });
  e.on("roomUserUpdate", (room, type, list) => {
    log(`roomUserUpdate ${type} ${list.map((u) => u.userID).join(", ")}`);
    for (const u of list) type === "ADD" ? users.set(u.userID, u) : users.delete(u.userID);
    renderUsers();
  });
  e.on("roomOnlineUserCountUpdate", (room, count) => {
    $("onlineCount").textContent = String(count);
  });
  e.on("roomStreamUpdate", (room, type, list, extendedData) => {
    log(`roomStreamUpdate ${type} ${list.map((s) => s.streamID).join(", ")}${type === "DELETE" ? ` ${extendedData}` : ""}`);
    for (const s of list) type === "ADD" ? streams.set(s.streamID, s) : streams.delete(s.streamID);
    renderStreams();
  });
  e.on("roomStreamExtraInfoUpdate", (room, list) => {
    for (const s of list) {
      streams.set(s.streamID, s);
      log(`roomStreamExtraInfoUpdate ${s.streamID}: ${s.extraInfo}`);
    }
    renderStreams();
  });
  e.on("roomExtraInfoUpdate", (room, list) => {
    for (const x of list) {
      log(`roomExtraInfoUpdate ${x.key}=${x.value} by ${x.updateUser.userID}`);
      let item = [...$("extraInfo").children].find((el) => el.dataset.key === x.key);
      if (!item) {
        item = li();
        item.dataset.key = x.key;
        $("extraInfo").append(item);
      }
      item.replaceChildren(span(x.key, "grow"), span(x.value));
    }
  });
  e.on("IMRecvBroadcastMessage", (room, list) => {
    for (const m of list) {
      log(`IMRecvBroadcastMessage from ${m.fromUser.userID}: ${m.message}`);
      $("messages").append(li(span(m.fromUser.userName || m.fromUser.userID, "muted"), span(m.message, "grow")));
    }
  });
  e.on("IMRecvCustomCommand", (room, from, command) => log(`IMRecvCustomCommand from ${from.userID}: ${command}`));
  e.on("tokenWillExpire", (room, remain) => log(`tokenWillExpire in ${remain} s: leave and join again with a new token`, true));
  e.on("publisherStateUpdate", (r) => {
    log(`publisherStateUpdate ${r.streamID} ${r.state}${r.errorCode ? ` ${r.errorCode}` : ""}`, !!r.errorCode && r.state === "NO_PUBLISH");
    $("publishState").textContent = r.state + (r.errorCode ? ` (${r.errorCode})` : "");
    if (r.state === "NO_PUBLISH") {
      publishing = "";
      $("publishQuality").textContent = "";
      syncButtons();
    }
  });
  e.on("publishQualityUpdate", (id, s) => {
    $("publishQuality").textContent = fmtQuality(s);
  });
  e.on("playerStateUpdate", (r) => {
    log(`playerStateUpdate ${r.streamID} ${r.state}${r.errorCode ? ` ${r.errorCode}` : ""}`, !!r.errorCode && r.state === "NO_PLAY");
    const t = tiles.get(r.streamID);
    if (t) {
      t.state.textContent = r.state + (r.errorCode ? ` (${r.errorCode})` : "");
      t.play.disabled = r.state !== "NO_PLAY";
      t.stop.disabled = r.state === "NO_PLAY";
      if (r.state === "NO_PLAY") t.quality.textContent = "";
    }
  });
  e.on("playerRecvVideoFirstFrame", (id) => {
    const t = tiles.get(id);
    const ms = t ? Math.round(performance.now() - t.started) : 0;
    log(`playerRecvVideoFirstFrame ${id} after ${ms} ms`);
    if (t) t.firstFrame.textContent = `first frame ${ms} ms`;
  });
  e.on("playQualityUpdate", (id, s) => {
    const t = tiles.get(id);
    if (t) t.quality.textContent = fmtQuality(s);
  });
}

// ---- play ----

function tile(streamID) {
  let t = tiles.get(streamID);
  if (t) return t;
  const el = document.createElement("div");
  el.className = "tile";
  el.dataset.streamId = streamID;
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true; // autoplay policy; unmute with the controls
  video.controls = true;
  const meta = document.createElement("div");
  meta.className = "meta";
  const title = span(streamID, "title");
  const state = span("NO_PLAY", "state");
  const firstFrame = span("", "first-frame muted");
  const quality = span("", "quality");
  t = { el, video, state, firstFrame, quality, started: 0 };
  t.play = button("Play", () => play(streamID), "small");
  t.stop = button("Stop", () => stopPlay(streamID), "small");
  t.stop.disabled = true;
  const close = button("Remove", () => {
    stopPlay(streamID);
    el.remove();
    tiles.delete(streamID);
  }, "small");
  const row = document.createElement("div");
  row.className = "row";
  row.append(t.play, t.stop, close, firstFrame);
  meta.append(title, state, row, quality);
  el.append(video, meta);
  $("tiles").append(el);
  tiles.set(streamID, t);
  return t;
}

async function play(streamID) {
  clearError();
  streamID = String(streamID || "").trim();
  if (!streamID) return showError("play", { message: "enter a stream ID" });
  if (!engine) return showError("play", { code: 1002002, message: "join a room first" });
  const t = tile(streamID);
  t.started = performance.now();
  t.firstFrame.textContent = "";
  try {
    t.video.srcObject = await engine.startPlayingStream(streamID);
  } catch (err) {
    showError(`play ${streamID}`, err);
  }
}

async function stopPlay(streamID) {
  if (engine) await engine.stopPlayingStream(streamID);
}

// ---- publish ----

async function cameraOn() {
  clearError();
  if (camera) {
    if (publishing) await stopPublish();
    engine?.destroyStream(camera) ?? camera.getTracks().forEach((t) => t.stop());
    camera = null;
    $("preview").srcObject = null;
    $("camera").textContent = "Camera on";
    syncButtons();
    return;
  }
  try {
    camera = await (engine ?? createEngine({ appID: 1 })).createStream({ camera: { video: true, audio: true } });
    $("preview").srcObject = camera;
    $("camera").textContent = "Camera off";
  } catch (err) {
    showError("camera", err);
  }
  syncButtons();
}

async function publish() {
  clearError();
  const id = $("publishStreamID").value.trim();
  if (!id) return showError("publish", { code: 1000014, message: "enter a stream ID" });
  try {
    publishing = id;
    syncButtons();
    await engine.startPublishingStream(id, camera, { extraInfo: $("publishExtraInfo").value });
  } catch (err) {
    publishing = "";
    showError(`publish ${id}`, err);
  }
  syncButtons();
}

async function stopPublish() {
  if (engine && publishing) await engine.stopPublishingStream(publishing);
  publishing = "";
  syncButtons();
}

function syncButtons() {
  const inRoom = !!engine;
  $("join").disabled = inRoom;
  $("leave").disabled = !inRoom;
  $("publish").disabled = !inRoom || !camera || !!publishing;
  $("stopPublish").disabled = !publishing;
}

// ---- join / leave ----

async function join(ev) {
  ev.preventDefault();
  clearError();
  const appID = Number($("appID").value.trim());
  roomID = $("roomID").value.trim();
  const userID = $("userID").value.trim();
  const userName = $("userName").value.trim() || userID;
  const token = $("token").value.trim();
  if (!appID) return showError("join", { code: 1000002, message: "AppID must be a number" });
  if (!roomID) return showError("join", { code: 1002011, message: "enter a RoomID" });
  if (!userID) return showError("join", { code: 1002005, message: "enter a UserID" });
  if (!token) return showError("join", { code: 1002067, message: "paste a token (or press Get dev token with onair dev)" });
  let e;
  try {
    e = createEngine({ appID });
  } catch (err) {
    return showError("join", err);
  }
  wire(e);
  engine = e;
  syncButtons();
  try {
    await e.loginRoom(roomID, token, { userID, userName }, { userUpdate: true });
    if (!$("publishStreamID").value) $("publishStreamID").value = `${userID}-cam`;
  } catch (err) {
    engine = null;
    await e.destroyEngine();
    showError("join", err);
  }
  syncButtons();
}

function left() {
  const e = engine;
  engine = null;
  publishing = "";
  users.clear();
  streams.clear();
  renderUsers();
  renderStreams();
  for (const t of tiles.values()) t.el.remove();
  tiles.clear();
  $("onlineCount").textContent = "0";
  $("publishState").textContent = "NO_PUBLISH";
  syncButtons();
  return e;
}

async function leave() {
  const e = left();
  if (e) await e.destroyEngine();
  setStatus("not logged in");
  log("left the room");
}

// ---- onair dev: its app and debug tokens ----

async function devSetup() {
  let app;
  try {
    const r = await fetch("/dev/app", { cache: "no-store" });
    if (!r.ok) return;
    app = await r.json();
  } catch {
    return;
  }
  if (!$("appID").value) $("appID").value = String(app.app_id);
  $("devToken").hidden = false;
  $("devNote").hidden = false;
}

async function devToken() {
  clearError();
  const userID = $("userID").value.trim();
  if (!userID) return showError("dev token", { code: 1002005, message: "enter a UserID first" });
  try {
    const r = await fetch("/dev/token", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user_id: userID }),
    });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) throw { code: j.code, message: j.message ?? r.statusText };
    $("token").value = j.token;
    log(`dev token for ${userID}, valid until ${new Date(j.expire_unix * 1000).toLocaleString()}`);
  } catch (err) {
    showError("dev token", err);
  }
}

// ---- start ----

function init() {
  $("sdkVersion").textContent = createEngine({ appID: 1 }).getVersion();
  for (const k of ["appID", "roomID", "userID", "userName", "token"]) {
    if (params.has(k)) $(k).value = params.get(k);
  }
  if (!$("userID").value) $("userID").value = `web-${Math.random().toString(36).slice(2, 8)}`;
  $("loginForm").addEventListener("submit", join);
  $("leave").addEventListener("click", leave);
  $("devToken").addEventListener("click", devToken);
  $("camera").addEventListener("click", cameraOn);
  $("publish").addEventListener("click", publish);
  $("stopPublish").addEventListener("click", stopPublish);
  $("clearLog").addEventListener("click", () => $("log").replaceChildren());
  $("playForm").addEventListener("submit", (ev) => {
    ev.preventDefault();
    play($("playStreamID").value);
  });
  $("messageForm").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearError();
    const text = $("message").value;
    if (!text) return;
    try {
      if (!engine) throw { code: 1002002, message: "join a room first" };
      await engine.sendBroadcastMessage(roomID, text);
      $("messages").append(li(span("me", "muted"), span(text, "grow")));
      $("message").value = "";
    } catch (err) {
      showError("send message", err);
    }
  });
  $("extraForm").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearError();
    try {
      if (!engine) throw { code: 1002002, message: "join a room first" };
      const key = $("extraKey").value;
      const value = $("extraValue").value;
      await engine.setRoomExtraInfo(roomID, key, value);
      log(`setRoomExtraInfo ${key}=${value}`);
      // The setter is not told by roomExtraInfoUpdate: show it here.
      let item = [...$("extraInfo").children].find((el) => el.dataset.key === key);
      if (!item) {
        item = li();
        item.dataset.key = key;
        $("extraInfo").append(item);
      }
      item.replaceChildren(span(key, "grow"), span(value));
    } catch (err) {
      showError("set room extra info", err);
    }
  });
  window.addEventListener("beforeunload", () => engine?.destroyEngine());
  syncButtons();
  devSetup();
  document.body.dataset.ready = "1";
}

init();
