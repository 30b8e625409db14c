// Reference for bench/roundtrip.sh: the same minimal job as the gateway's round trip, written
// the plain Node way. socket.io 4 + amqplib + node cluster (WORKERS workers, default 2, sharing
// the port; websocket only, so no sticky sessions needed).
//   message {connect:{}}  -> declare the client's queue (named by a fresh clientId, expires 1 h
//                            unused), consume it (manual ack, prefetch 10), gatewayConnectAck
//   <request event> data  -> publish to the agent queue of that name, replyTo = clientId,
//                            clientId overwritten, mandatory, on a confirm channel
//   delivery on the queue -> emit `push`; kept until the client's ack
//   message {ack:{correspondingMessageId}} -> ack the AMQP message
// No sessions/HMAC, no re-sends, no login rules: a lower bound on the work.
// Usage: [WORKERS=2] [PING_INTERVAL=ms] [PING_TIMEOUT=ms] node server.js PORT [amqp-url]
//        (the primary prints "workers PID PID" once all are ready)
"use strict";
const cluster = require("cluster");
const crypto = require("crypto");
const PORT = parseInt(process.argv[2] || "18280", 10);
const AMQP = process.argv[3] || "amqp://guest:guest@127.0.0.1:5672/%2f";
const WORKERS = parseInt(process.env.WORKERS || "2", 10);

if (cluster.isPrimary) {
  let ready = 0;
  for (let i = 0; i < WORKERS; i++) {
    const w = cluster.fork();
    w.on("message", (m) => {
      if (m === "ready" && ++ready === WORKERS) {
        process.stdout.write("workers " + Object.values(cluster.workers).map((x) => x.process.pid).join(" ") + "\n");
      }
    });
  }
  cluster.on("exit", (w, code) => { console.error(`worker ${w.process.pid} exited ${code}`); });
  const stop = () => { for (const w of Object.values(cluster.workers)) w.kill(); setTimeout(() => process.exit(0), 300); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
} else {
  const amqp = require("amqplib");
  const { Server } = require("socket.io");
  (async () => {
    const conn = await amqp.connect(AMQP, { noDelay: true }); // amqplib leaves Nagle on by default
    conn.on("close", () => process.exit(3));
    const pub = await conn.createConfirmChannel();
    pub.on("return", () => {});
    const cons = await conn.createChannel();
    await cons.prefetch(10);
    const ioServer = new Server(PORT, {
      transports: ["websocket"], serveClient: false,
      pingInterval: parseInt(process.env.PING_INTERVAL || "25000", 10), // socket.io 4's defaults
      pingTimeout: parseInt(process.env.PING_TIMEOUT || "20000", 10),
    });
    ioServer.on("connection", (socket) => {
      let clientId = null, consumerTag = null;
      const pending = new Map(); // correspondingMessageId -> AMQP message
      socket.on("message", async (m) => {
        if (!m || typeof m !== "object") return;
        if (m.connect) {
          if (!clientId) {
            clientId = crypto.randomBytes(16).toString("hex");
            await cons.assertQueue(clientId, { arguments: { "x-expires": 3600000 } });
            const r = await cons.consume(clientId, (msg) => {
              if (!msg) return;
              let body;
              try { body = JSON.parse(msg.content.toString()); } catch (_) { cons.ack(msg); return; }
              if (body.correspondingMessageId !== undefined) pending.set(body.correspondingMessageId, msg);
              else cons.ack(msg);
              socket.emit("push", body);
            });
            consumerTag = r.consumerTag;
          }
          socket.emit("gatewayConnectAck", Buffer.from(JSON.stringify({ clientId })).toString("base64") + ";x");
        } else if (m.ack) {
          const id = m.ack.correspondingMessageId;
          const msg = pending.get(id);
          if (msg) { pending.delete(id); cons.ack(msg); }
        }
      });
      socket.onAny((event, data) => {
        if (event === "message") return;
        if (!clientId) { socket.emit("gatewayError", { code: "notConnected", event }); return; }
        const req = data && typeof data === "object" ? data : {};
        req.clientId = clientId;
        pub.publish("", event, Buffer.from(JSON.stringify(req)), { replyTo: clientId, mandatory: true }, (err) => {
          if (err) socket.emit("gatewayError", { code: "unavailable", event, messageId: req.messageId });
        });
      });
      socket.on("disconnect", () => {
        if (consumerTag) cons.cancel(consumerTag).catch(() => {});
        // unacked messages go back to the queue when the consumer is cancelled
      });
    });
    process.send("ready");
  })().catch((e) => { console.error("worker:", e); process.exit(1); });
}
