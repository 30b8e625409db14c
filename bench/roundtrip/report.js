// bench/roundtrip.sh: results.jsonl -> roundtrip.json + roundtrip.md
"use strict";
const fs = require("fs");
const [src, jsonOut, mdOut, logs] = process.argv.slice(2);
const runs = fs.readFileSync(src, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
// With --rounds: each side's median run per count (by CPU per round trip), whole, so that its
// numbers belong together; every run is kept in the JSON's `runs`.
const runsOf = (side, n) => runs.filter((r) => r.side === side && r.clients === n);
const median = (list) => {
  const ok = list.filter((r) => !r.failed).sort((a, b) => a.cpuUsPerRt - b.cpuUsPerRt);
  return ok.length ? { ...ok[Math.floor((ok.length - 1) / 2)], cpuUsPerRtRuns: ok.map((r) => r.cpuUsPerRt) } : list[0];
};
const keys = [...new Set(runs.map((r) => `${r.side}/${r.clients}`))];
const rows = keys.map((k) => { const [side, n] = k.split("/"); return median(runsOf(side, Number(n))); });
const rounds = Math.max(...runs.map((r) => r.round || 1));
fs.writeFileSync(jsonOut, JSON.stringify({ meta: { date: new Date().toISOString(), logs, rounds }, rows, runs }, null, 2) + "\n");
const by = (side, n) => rows.find((r) => r.side === side && r.clients === n);
const counts = [...new Set(rows.map((r) => r.clients))].sort((a, b) => a - b);
const fmt = (r) => !r ? "– | – | – | – | –" : r.failed ? "failed | | | |"
  : `${Math.round(r.rtPerSec)} | ${r.p50ms.toFixed(2)} | ${r.p99ms.toFixed(2)} | ${r.maxms.toFixed(1)} | ${Math.round(r.cpuUsPerRt)}`;
const ratio = (a, b) => (a && b && !a.failed && !b.failed ? (a.rtPerSec / b.rtPerSec).toFixed(2) + "×" : "–");
const protocols = [...new Set(rows.map((r) => r.protocol).filter(Boolean))];
let md = `# Round trip: socket.io ${protocols.join("/") || "v4"} client -> gateway -> RabbitMQ -> echo agent -> gateway -> push -> ack\n\n`;
md += "Closed loop, one request in flight per client, `testCall` to the echo agent (bench/roundtrip/agent.js). ";
md += "Latency in ms; CPU = utime+stime of every gateway process (ours: master, 2 workers, standby; node: primary, 2 workers) over the measure window / round trips. ";
md += "Load generator, echo agent, RabbitMQ and the gateway share the same 2 cores.";
if (rounds > 1) md += ` ${rounds} rounds, ours and node alternating; each side's median run (by CPU per round trip), with every run's CPU µs/rt after it.`;
md += "\n\n";
const cpuRatio = (a, b) => (a && b && !a.failed && !b.failed ? (a.cpuUsPerRt / b.cpuUsPerRt).toFixed(2) : "–");
const spread = (r) => (rounds > 1 && r && r.cpuUsPerRtRuns ? ` (${r.cpuUsPerRtRuns.map((c) => Math.round(c)).join(", ")})` : "");
md += "| clients | ours rt/s | p50 | p99 | max | CPU µs/rt | node rt/s | p50 | p99 | max | CPU µs/rt | rt/s ours/node | CPU ours/node |\n";
md += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
for (const n of counts) {
  const [o, d] = [by("ours", n), by("node", n)];
  md += `| ${n} | ${fmt(o)}${spread(o)} | ${fmt(d)}${spread(d)} | ${ratio(o, d)} | ${cpuRatio(o, d)} |\n`;
}
const odd = runs.filter((r) => r.duplicates || r.gatewayErrors || r.disconnects);
if (odd.length) {
  md += "\nAnomalies (pushes re-sent after ack, gatewayError events, unexpected disconnects):\n\n";
  for (const r of odd) md += `- ${r.side} ${r.clients} clients (round ${r.round || 1}): duplicates ${r.duplicates}, gatewayErrors ${r.gatewayErrors}, disconnects ${r.disconnects}\n`;
}
md += "\nCPU seconds of each process during the measure window (gateway workers / load generator / echo agent / RabbitMQ):\n\n";
for (const r of rows.filter((r) => !r.failed)) {
  const o = r.otherCpuSec || {};
  md += `- ${r.side} ${r.clients}: workers ${r.cpuSec.toFixed(2)}, ${Object.entries(o).map(([k, v]) => `${k} ${v}`).join(", ")} (over ${r.seconds} s)\n`;
}
md += `\nconnect phase, socket open to gatewayConnectAck for every client (${process.env.CONNECT_BATCH || 50} connecting at a time): `;
md += rows.filter((r) => !r.failed).map((r) => `${r.side}/${r.clients}: ${r.connectMs} ms (${Math.round(r.clients / (r.connectMs / 1000))} clients/s)`).join(", ") + "\n";
fs.writeFileSync(mdOut, md);
