// A centrifuge-js 5 client (npm `centrifuge`, over the `ws` package) the realtime integration
// tests drive: one JSON command per stdin line, one JSON line per event on stdout. Commands:
//   {"op":"connect","url":"ws://127.0.0.1:PORT/connection/websocket","token":T,"channel":C}
//     (subscribes to C when given; reconnects as the library does)
//   {"op":"disconnect"}   {"op":"reconnect"}   {"op":"exit"}
// Output: {"event":"connected"|"disconnected"|"subscribed"|"publication"|"unsubscribed"|
//          "error"|"sub_error", ...fields}
"use strict";
const { Centrifuge } = require("centrifuge");
const WebSocket = require("ws");

let client = null;
const { out, commands } = require("./driver");

commands((cmd) => {
  switch (cmd.op) {
    case "connect": {
      client = new Centrifuge(cmd.url, {
        token: cmd.token,
        websocket: WebSocket,
        minReconnectDelay: 50,
        maxReconnectDelay: 500,
      });
      client.on("connected", (ctx) => out({ event: "connected", client: ctx.client }));
      client.on("disconnected", (ctx) =>
        out({ event: "disconnected", code: ctx.code, reason: ctx.reason }),
      );
      client.on("error", (ctx) =>
        out({ event: "error", type: ctx.type, code: ctx.error && ctx.error.code }),
      );
      if (cmd.channel) {
        const sub = client.newSubscription(cmd.channel);
        sub.on("subscribed", (ctx) =>
          out({
            event: "subscribed",
            channel: ctx.channel,
            recovered: ctx.recovered,
            wasRecovering: ctx.wasRecovering,
            recoverable: ctx.recoverable,
            offset: ctx.streamPosition && ctx.streamPosition.offset,
            epoch: ctx.streamPosition && ctx.streamPosition.epoch,
          }),
        );
        sub.on("publication", (ctx) =>
          out({ event: "publication", channel: ctx.channel, offset: ctx.offset, data: ctx.data }),
        );
        sub.on("unsubscribed", (ctx) =>
          out({ event: "unsubscribed", code: ctx.code, reason: ctx.reason }),
        );
        sub.on("error", (ctx) =>
          out({ event: "sub_error", code: ctx.error && ctx.error.code }),
        );
        sub.subscribe();
      }
      client.connect();
      break;
    }
    case "disconnect":
      client.disconnect();
      break;
    case "reconnect":
      client.connect();
      break;
    default:
      out({ event: "driver_error", data: "unknown op " + cmd.op });
  }
});
