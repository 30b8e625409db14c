// The clients of bench/chaos (driven by tests/chaos.rs): socket.io v4 clients (npm
// socket.io-client 4) and socket.io 0.9 clients (npm socket.io-client 0.9.17) doing acked round
// trips through the gateway, and centrifuge-js clients subscribed to their personal channels.
// Every event that matters for the count goes to an event log (one line each, tab-separated),
// which the orchestrator reads; stdout carries control lines (JSON).
//
// Usage: node clients.js CONFIG_JSON EVENT_LOG
//   CONFIG_JSON: {"url": "http://127.0.0.1:PORT", "v4": N, "legacy": N, "realtime": [{user, token}],
//                 "thinkMs": 20, "retryMs": 15000, "tag": "kill"}
// stdin: {"op":"stop"} = send no new requests, finish the pending ones; {"op":"exit"}.
// stdout: {"event":"ready"} once every client is connected, logged in (socket.io) or subscribed
//   (realtime); {"event":"drained", ...} once every socket.io client has its last answer;
//   {"event":"progress", ...} every second.
//
// What a socket.io client does (the behaviour the README recommends):
// - connect: `message {connect:{}}`; after a reconnect `message {reconnect:{reconnectId: KEY}}`
//   with the latest key from `gatewayConnectAck`; logs in once (`authenticate`).
// - one request in flight, `sendAck: true`, `messageId` unique, `attempt` counting re-sends.
// - `ack` (messageId) = RabbitMQ has the request: the answer will come, also after a reconnect
//   (the backend moves the old queue's messages into the new one).
// - no `ack` before the connection ended, or `gatewayError` for it: the request may never have
//   reached the backend: re-send it (same messageId, next attempt) once connected again.
// - no answer `retryMs` after the last (re)send or reconnect: re-send.
// - every `push` with a correspondingMessageId is acked with `message {ack:{correspondingMessageId}}`.
//
// Event log lines (t = ms since start):
//   S t client id attempt conn        request sent
//   K t client id conn                `ack` (RabbitMQ confirmed the request)
//   P t client id attempt conn        push with that correspondingMessageId
//   E t client id conn error          gatewayError for a request
//   C t client conn                   (re)connected, session acknowledged
//   D t client conn reason            disconnected
//   X t client reason                 a fresh socket (the library gave up)
//   RS t user conn recovered wasRecovering epoch offset    realtime subscribed
//   RP t user conn dataId offset epoch                     realtime publication
//   RD t user conn code reason                             realtime disconnected
//   RC t user conn                                         realtime connected
"use strict";
const fs = require("fs");
const readline = require("readline");

const [configArg, logPath] = process.argv.slice(2);
const config = JSON.parse(configArg);
const RETRY_MS = config.retryMs ?? 15000;
const THINK_MS = config.thinkMs ?? 0;
const T0 = Date.now();
const log = fs.createWriteStream(logPath);
const line = (...fields) => log.write(fields.join("\t") + "\n");
const now = () => Date.now() - T0;
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

let stopping = false;
const stats = { sent: 0, answered: 0, pushes: 0, disconnects: 0, connects: 0, rtPublications: 0 };

// ----- socket.io clients -----

// Both libraries behind one small interface: on(event, fn), emit(event, data), close().
function v4Socket(url) {
  const { io } = require("socket.io-client");
  const s = io(url, {
    transports: ["websocket"],
    forceNew: true,
    reconnection: true,
    reconnectionDelay: 500,
    reconnectionDelayMax: 2000,
    timeout: 10000,
  });
  return {
    on: (e, fn) => s.on(e, fn),
    onConnect: (fn) => s.on("connect", fn),
    onDisconnect: (fn) => s.on("disconnect", (reason) => fn(String(reason))),
    onGiveUp: () => {}, // v4 retries for ever
    emit: (e, d) => { s.emit(e, d); return true; },
    close: () => s.close(),
  };
}

function legacySocket(url) {
  const io = require("socket.io-client-legacy");
  const s = io.connect(url, {
    transports: ["websocket"],
    "force new connection": true,
    reconnect: true,
    "reconnection delay": 500,
    "reconnection limit": 2000,
    "max reconnection attempts": Infinity,
    "connect timeout": 10000,
  });
  return {
    on: (e, fn) => s.on(e, fn),
    onConnect: (fn) => s.on("connect", fn),
    onDisconnect: (fn) => s.on("disconnect", (reason) => fn(String(reason))),
    onGiveUp: (fn) => { s.on("reconnect_failed", fn); s.on("connect_failed", fn); },
    // The 0.9 library throws ("not opened") when its websocket is closing but it has not
    // noticed yet: the packet is not sent, and the disconnect follows.
    emit: (e, d) => {
      try { s.emit(e, d); return true; } catch (_) { return false; }
    },
    close: () => s.disconnect(),
  };
}

class SioClient {
  constructor(name, kind) {
    this.name = name;
    this.kind = kind;
    this.conn = 0;
    this.key = null;
    this.ready = false; // session acknowledged on the current connection
    this.loggedIn = false;
    this.seq = 0;
    this.pending = null; // {id, attempt, acked, sentAt, cn}
    this.done = false;
    this.fresh();
  }

  fresh() {
    const sock = this.kind === "legacy" ? legacySocket(config.url) : v4Socket(config.url);
    this.sock = sock;
    sock.onConnect(() => this.onConnect());
    sock.onDisconnect((reason) => this.onDisconnect(reason));
    sock.onGiveUp(() => {
      line("X", now(), this.name, "gave-up");
      try { sock.close(); } catch (_) {}
      setTimeout(() => this.fresh(), 500);
    });
    sock.on("gatewayConnectAck", (key) => this.onSession(key));
    sock.on("ack", (id) => this.onAck(id));
    sock.on("push", (p) => this.onPush(p));
    sock.on("gatewayError", (e) => this.onError(e));
  }

  onConnect() {
    this.conn++;
    this.ready = false;
    stats.connects++;
    if (this.key) this.sock.emit("message", { reconnect: { reconnectId: this.key } });
    else this.sock.emit("message", { connect: {} });
  }

  onDisconnect(reason) {
    this.ready = false;
    stats.disconnects++;
    line("D", now(), this.name, this.conn, reason);
  }

  onSession(key) {
    if (typeof key === "string") this.key = key;
    if (this.ready) return; // a new key on a live session (after the login)
    this.ready = true;
    line("C", now(), this.name, this.conn);
    const p = this.pending;
    if (!p) return this.next();
    // What the client knows: `ack` seen = the backend has it, its answer will come (moved to the
    // new queue on the ReconnectRequest). No `ack` = it may be lost: send it again.
    if (!p.acked) this.send(p);
    else p.sentAt = Date.now(); // the retry clock restarts at the reconnect
  }

  next() {
    if (this.pending || !this.ready) return;
    if (stopping && this.loggedIn) {
      this.done = true;
      return;
    }
    const cn = this.loggedIn ? "TestCall" : "com.percero.agents.auth.vo.AuthenticateUserAccountRequest";
    const p = { id: `${this.name}-${++this.seq}`, attempt: 0, acked: false, cn };
    this.pending = p;
    this.send(p);
  }

  send(p) {
    const event = this.loggedIn ? "testCall" : "authenticate";
    const body = { cn: p.cn, messageId: p.id, attempt: p.attempt + 1, sendAck: true };
    if (!this.loggedIn) Object.assign(body, { user: this.name, deviceId: `${this.name}-device` });
    p.sentAt = Date.now();
    if (!this.sock.emit(event, body)) {
      // Not sent (the library's socket is going away): sent again once connected again.
      line("F", now(), this.name, p.id, this.conn);
      this.ready = false;
      return;
    }
    p.attempt++;
    p.acked = false;
    stats.sent++;
    line("S", now(), this.name, p.id, p.attempt, this.conn);
  }

  onAck(id) {
    line("K", now(), this.name, id, this.conn);
    if (this.pending && this.pending.id === id) this.pending.acked = true;
  }

  onError(e) {
    const id = e && e.messageId;
    line("E", now(), this.name, id ?? "-", this.conn, (e && e.error) || "?");
    // A request the gateway could not hand to RabbitMQ: send it again (after a pause: the
    // broker is probably away).
    const p = this.pending;
    if (p && id === p.id && !p.acked) {
      setTimeout(() => { if (this.pending === p && this.ready && !p.acked) this.send(p); }, 500);
    }
  }

  onPush(push) {
    const id = push && push.correspondingMessageId;
    if (id === undefined || id === null) return; // ConnectResponse and the like
    this.sock.emit("message", { ack: { correspondingMessageId: id } });
    stats.pushes++;
    const attempt = (push.request && push.request.attempt) ?? push.attempt ?? 0;
    line("P", now(), this.name, id, attempt, this.conn);
    const p = this.pending;
    if (!p || p.id !== id) return; // a duplicate of an answered request
    stats.answered++;
    if (!this.loggedIn) this.loggedIn = true;
    this.pending = null;
    if (THINK_MS > 0) setTimeout(() => this.next(), THINK_MS);
    else this.next();
  }

  // Called every second: a request without an answer for RETRY_MS is sent again.
  tick() {
    const p = this.pending;
    if (p && this.ready && Date.now() - p.sentAt > RETRY_MS) {
      line("T", now(), this.name, p.id, p.attempt, this.conn);
      this.send(p);
    }
    if (stopping && !this.pending && this.ready && this.loggedIn) this.done = true;
  }
}

// ----- realtime (centrifuge-js) clients -----

class RtClient {
  constructor(user, token) {
    const { Centrifuge } = require("centrifuge");
    this.user = user;
    this.conn = 0;
    this.subscribed = false;
    const c = new Centrifuge(config.url.replace(/^http/, "ws") + "/connection/websocket", {
      token,
      websocket: require("ws"),
      minReconnectDelay: 200,
      maxReconnectDelay: 2000,
    });
    c.on("connected", () => { this.conn++; line("RC", now(), user, this.conn); });
    c.on("disconnected", (ctx) => line("RD", now(), user, this.conn, ctx.code, JSON.stringify(ctx.reason)));
    c.on("connecting", (ctx) => { if (this.conn > 0) line("RD", now(), user, this.conn, ctx.code, JSON.stringify(ctx.reason)); });
    const sub = c.newSubscription(`personal:#${user}`);
    sub.on("subscribed", (ctx) => {
      this.subscribed = true;
      const pos = ctx.streamPosition || {};
      line("RS", now(), user, this.conn, ctx.recovered, ctx.wasRecovering, pos.epoch ?? "-", pos.offset ?? "-");
    });
    sub.on("publication", (ctx) => {
      stats.rtPublications++;
      const id = ctx.data && ctx.data.id;
      line("RP", now(), user, this.conn, id ?? "-", ctx.offset ?? "-", (ctx.tags && ctx.tags.epoch) || "-");
    });
    sub.on("error", (ctx) => line("RE", now(), user, this.conn, ctx.error && ctx.error.code));
    sub.subscribe();
    c.connect();
    this.client = c;
  }
}

// ----- main -----

// A bug in a client library must not take every client down with it: logged, counted.
process.on("uncaughtException", (e) => {
  line("U", now(), "-", String(e && e.stack || e).split("\n").slice(0, 3).join(" | "));
  stats.uncaught = (stats.uncaught || 0) + 1;
});

const sio = [];
for (let i = 0; i < (config.v4 || 0); i++) sio.push(new SioClient(`${config.tag}-v4-${i}`, "v4"));
for (let i = 0; i < (config.legacy || 0); i++) sio.push(new SioClient(`${config.tag}-l09-${i}`, "legacy"));
const rt = (config.realtime || []).map(({ user, token }) => new RtClient(user, token));

let announcedReady = false;
let announcedDrained = false;
setInterval(() => {
  for (const c of sio) c.tick();
  if (!announcedReady && sio.every((c) => c.loggedIn) && rt.every((c) => c.subscribed)) {
    announcedReady = true;
    out({ event: "ready", ms: now() });
  }
  if (stopping && !announcedDrained && sio.every((c) => c.done)) {
    announcedDrained = true;
    out({ event: "drained", ms: now() });
  }
  out({ event: "progress", ms: now(), ...stats, pending: sio.filter((c) => c.pending).length });
}, 1000);

readline.createInterface({ input: process.stdin }).on("line", (l) => {
  let cmd;
  try { cmd = JSON.parse(l); } catch (_) { return; }
  if (cmd.op === "stop") stopping = true;
  if (cmd.op === "exit") {
    for (const c of sio) { try { c.sock.close(); } catch (_) {} }
    for (const c of rt) { try { c.client.disconnect(); } catch (_) {} }
    log.end(() => process.exit(0));
  }
});
process.stdin.on("end", () => log.end(() => process.exit(0)));
