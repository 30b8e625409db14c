// A socket.io client the gateway's integration tests drive: one JSON command per stdin line,
// one JSON line per received event on stdout. Commands:
//   {"op":"connect","url":"http://127.0.0.1:PORT"}   {"op":"emit","event":E,"data":D}
//   (for https/wss: {"op":"connect","url":"https://...","ca":"<PEM of the certificates to trust>"})
//   {"op":"close"}   {"op":"exit"}
// Output: {"event":"connect"|"disconnect"|"connect_error"|<any server event>,"data":...}
"use strict";
const { io } = require("socket.io-client");
const readline = require("readline");

let socket = null;
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    out({ event: "driver_error", data: String(e) });
    return;
  }
  switch (cmd.op) {
    case "connect":
      socket = io(cmd.url, {
        transports: ["websocket"],
        reconnection: false,
        forceNew: true,
        ...(cmd.ca ? { ca: cmd.ca } : {}),
      });
      socket.on("connect", () => out({ event: "connect" }));
      socket.on("disconnect", (reason) => out({ event: "disconnect", data: reason }));
      socket.on("connect_error", (e) => out({ event: "connect_error", data: String(e.message) }));
      socket.onAny((event, ...args) => out({ event, data: args[0] }));
      break;
    case "emit":
      socket.emit(cmd.event, cmd.data);
      break;
    case "emit_raw":
      // No payload at all.
      socket.emit(cmd.event);
      break;
    case "close":
      socket.close();
      break;
    case "exit":
      process.exit(0);
  }
});
process.stdin.on("end", () => process.exit(0));
