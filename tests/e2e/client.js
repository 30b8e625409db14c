// A socket.io client the gateway's integration tests drive: one JSON command per stdin line,
// one JSON line per received event on stdout. Commands:
//   {"op":"connect","url":"http://127.0.0.1:PORT"}   {"op":"emit","event":E,"data":D}
//   (for https/wss: {"op":"connect","url":"https://...","ca":"<PEM of the certificates to trust>"})
//   connect options, all off by default: "reconnection": true (socket.io-client's automatic
//   reconnection, with short delays); "resume": true (on every reconnection, send
//   message{reconnect:{reconnectId:<the last gatewayConnectAck>}}, as the ActiveStack SDK does)
//   {"op":"emit_many","events":[[E,D],...]}   (emitted in one go, without waiting in between)
//   {"op":"close"}   {"op":"exit"}
//   A swarm of sockets in this process, each round-tripping requests without pause:
//   {"op":"swarm","url":U,"count":N,"prefix":P,"request":R}: each socket sends message{connect},
//     then `testCall` with R plus messageId "P-<socket>-<n>", and on the push answering it acks it
//     and sends the next; {"event":"swarm_ready"} once every socket has its gatewayConnectAck.
//   {"op":"swarm_status"} -> {"event":"swarm_status","data":{done,disconnects,inflight,errors}}
//     (per socket: round trips done, disconnects seen, a request awaiting its answer; errors: the
//     gatewayError events seen); {"op":"swarm_stop"}: no new requests after the current ones.
// Output: {"event":"connect"|"disconnect"|"connect_error"|<any server event>,"data":...}
// ("connect" carries how many times this socket has connected).
"use strict";
const { io } = require("socket.io-client");

let socket = null;
let swarm = null;
const { out, commands } = require("./driver");

function connect(cmd) {
  socket = io(cmd.url, {
    transports: ["websocket"],
    reconnection: !!cmd.reconnection,
    reconnectionDelay: 50,
    reconnectionDelayMax: 200,
    forceNew: true,
    ...(cmd.ca ? { ca: cmd.ca } : {}),
  });
  let connects = 0;
  let lastKey = null;
  socket.on("connect", () => {
    connects += 1;
    if (cmd.resume && connects > 1 && lastKey) {
      socket.emit("message", { reconnect: { reconnectId: lastKey } });
    }
    out({ event: "connect", data: connects });
  });
  socket.on("gatewayConnectAck", (key) => {
    lastKey = key;
  });
  socket.on("disconnect", (reason) => out({ event: "disconnect", data: reason }));
  socket.on("connect_error", (e) => out({ event: "connect_error", data: String(e.message) }));
  socket.onAny((event, ...args) => out({ event, data: args[0] }));
}

function startSwarm(cmd) {
  swarm = { done: [], disconnects: [], inflight: [], errors: 0, stop: false };
  let ready = 0;
  for (let i = 0; i < cmd.count; i++) {
    const s = io(cmd.url, { transports: ["websocket"], reconnection: false, forceNew: true });
    swarm.done.push(0);
    swarm.disconnects.push(0);
    swarm.inflight.push(null);
    let acked = false;
    const next = () => {
      if (swarm.stop || !s.connected) {
        swarm.inflight[i] = null;
        return;
      }
      const id = `${cmd.prefix}-${i}-${swarm.done[i]}`;
      swarm.inflight[i] = id;
      s.emit("testCall", { ...cmd.request, messageId: id });
    };
    s.on("connect", () => s.emit("message", { connect: true }));
    s.on("gatewayConnectAck", () => {
      if (acked) return;
      acked = true;
      ready += 1;
      if (ready === cmd.count) out({ event: "swarm_ready" });
      next();
    });
    s.on("push", (m) => {
      // Re-sends of an answer already acked do not match the request in flight.
      if (!m || m.correspondingMessageId !== swarm.inflight[i]) return;
      s.emit("message", { ack: { correspondingMessageId: m.correspondingMessageId } });
      swarm.done[i] += 1;
      next();
    });
    s.on("gatewayError", () => {
      swarm.errors += 1;
    });
    s.on("disconnect", (reason) => {
      swarm.disconnects[i] += 1;
      out({ event: "swarm_disconnect", data: { socket: i, reason } });
    });
  }
}

commands((cmd) => {
  switch (cmd.op) {
    case "connect":
      connect(cmd);
      break;
    case "emit":
      socket.emit(cmd.event, cmd.data);
      break;
    case "emit_many":
      for (const [event, data] of cmd.events) socket.emit(event, data);
      break;
    case "emit_raw":
      // No payload at all.
      socket.emit(cmd.event);
      break;
    case "close":
      socket.close();
      break;
    case "swarm":
      startSwarm(cmd);
      break;
    case "swarm_status":
      out({
        event: "swarm_status",
        data: {
          done: swarm.done,
          disconnects: swarm.disconnects,
          inflight: swarm.inflight.map((id) => id !== null),
          errors: swarm.errors,
        },
      });
      break;
    case "swarm_stop":
      swarm.stop = true;
      break;
  }
});
