// A socket.io 0.9 client (npm socket.io-client@0.9.17, installed as `socket.io-client-legacy`:
// the client the ActiveStack JS SDK loads) that the gateway's integration tests drive, in the
// same way as client.js: one JSON command per stdin line, one JSON line per received event on
// stdout. Commands:
//   {"op":"connect","url":"http://127.0.0.1:PORT"}: io.connect with the SDK's options
//     (ActiveSDKJavaScript src/ActiveStackClient.js: 'force new connection', no automatic
//     reconnect, 'try multiple transports' off, 'secure' for https). Options, off by default:
//     "reconnection": true (0.9's automatic reconnection, short delay); "heartbeats": true
//     (report every heartbeat the server sends: {"event":"heartbeat","data":<ms since connect>}).
//   {"op":"emit","event":E,"data":D}   {"op":"emit_many","events":[[E,D],...]}
//   {"op":"emit_raw","event":E} (no payload)   {"op":"close"}   {"op":"exit"}
// Output: {"event":<any event the socket emits: "connect", "disconnect", "error",
// "connect_failed", "connecting", or a server event>,"data":<its first argument>}. "connect"
// carries how many times this socket has connected, and "localPort", the local TCP port of its
// websocket (the handshake is another connection, which may go to another worker).
"use strict";
const io = require("socket.io-client-legacy");

let socket = null;
const { out, commands } = require("./driver");

// Heartbeats are the transport's business and reach no event: the tests that count them see
// them here (the client answers them as it always does).
let onHeartbeat = null;
const answerHeartbeat = io.Transport.prototype.onHeartbeat;
io.Transport.prototype.onHeartbeat = function () {
  if (onHeartbeat) onHeartbeat();
  return answerHeartbeat.apply(this, arguments);
};

/// The local port of the socket's websocket (ws 0.4 keeps its net.Socket in `_socket`).
function localPort(s) {
  const transport = s.socket && s.socket.transport;
  const ws = transport && transport.websocket;
  return ws && ws._socket ? ws._socket.localPort : null;
}

function connect(cmd) {
  socket = io.connect(cmd.url, {
    "force new connection": true,
    reconnect: !!cmd.reconnection,
    "reconnection delay": 50,
    "try multiple transports": false,
    secure: cmd.url.startsWith("https:"),
  });
  let connects = 0;
  let connectedAt = Date.now();
  if (cmd.heartbeats) {
    onHeartbeat = () => out({ event: "heartbeat", data: Date.now() - connectedAt });
  }
  // Every event the socket emits, the server's and the socket's own, goes through `$emit`.
  const emit = socket.$emit;
  socket.$emit = function (name, ...args) {
    if (name === "connect") {
      connects += 1;
      connectedAt = Date.now();
      out({ event: "connect", data: connects, localPort: localPort(socket) });
    } else {
      out({ event: name, data: args[0] === undefined ? null : args[0] });
    }
    return emit.apply(this, [name, ...args]);
  };
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
      socket.emit(cmd.event);
      break;
    case "close":
      socket.disconnect();
      break;
  }
});
