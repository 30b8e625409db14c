// bench/idle.sh: results.jsonl -> idle.json + idle.md
"use strict";
const fs = require("fs");
const [src, jsonOut, mdOut, logs] = process.argv.slice(2);
const rows = fs.readFileSync(src, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
fs.writeFileSync(jsonOut, JSON.stringify({ meta: { date: new Date().toISOString(), logs }, rows }, null, 2) + "\n");
const kib = (b) => (b / 1024).toFixed(1);
const mib = (b) => (b / 1048576).toFixed(1);
let md = "# Idle clients on one gateway worker: memory per connection, connect rate\n\n";
md += "Each client connected (`message {connect:{}}` -> gatewayConnectAck: its RabbitMQ queue and consumer exist), ";
md += "then held idle through heartbeats. KiB per client = (worker RSS after the hold - worker RSS before any client) / clients; ";
md += "kernel socket buffers not included. Connect rate: socket open to gatewayConnectAck, 50 at a time.\n\n";
md += "| side | clients | KiB/client | worker RSS idle / connected / after hold (MiB) | connect (clients/s) | disconnects in hold |\n";
md += "|---|---:|---:|---:|---:|---:|\n";
for (const r of rows) {
  if (r.failed) { md += `| ${r.side} | ${r.clients} | failed | | | |\n`; continue; }
  md += `| ${r.side} | ${r.clients} | ${kib(r.bytesPerClient)} | ${mib(r.rssIdle)} / ${mib(r.rssConnected)} / ${mib(r.rssHeld)} | ${Math.round(r.clientsPerSec)} | ${r.disconnectsDuringHold} |\n`;
}
fs.writeFileSync(mdOut, md);
