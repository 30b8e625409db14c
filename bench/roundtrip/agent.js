// Echo agent for bench/roundtrip.sh: consumes the `testCall` agent queue and answers every
// request on its replyTo queue with {cn: <cn>Response, correspondingMessageId, clientId}, the
// shape of the Rust echo agent in tests/gateway.rs (minus its debugging fields).
// Usage: node agent.js [amqp-url]   (prints "ready" once it consumes)
"use strict";
const amqp = require("amqplib");
const url = process.argv[2] || "amqp://guest:guest@127.0.0.1:5672/%2f";

(async () => {
  const conn = await amqp.connect(url, { noDelay: true }); // amqplib leaves Nagle on by default: 40 ms stalls
  const ch = await conn.createChannel();
  await ch.assertQueue("testCall", { durable: false }); // as lapin's default in tests/gateway.rs
  await ch.prefetch(500);
  await ch.consume("testCall", (msg) => {
    if (!msg) return;
    ch.ack(msg);
    const replyTo = msg.properties.replyTo;
    if (!replyTo) return;
    let req = {};
    try { req = JSON.parse(msg.content.toString()); } catch (_) {}
    const cn = typeof req.cn === "string" ? req.cn : "testCall";
    const reply = { cn: cn + "Response", clientId: req.clientId ?? null };
    if (req.messageId !== undefined) reply.correspondingMessageId = req.messageId;
    ch.sendToQueue(replyTo, Buffer.from(JSON.stringify(reply)));
  });
  process.stdout.write("ready\n");
  const stop = () => conn.close().finally(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
})().catch((e) => { console.error("agent:", e); process.exit(1); });
