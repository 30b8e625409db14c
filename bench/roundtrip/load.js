// Round-trip load for bench/roundtrip.sh. N socket.io clients (websocket only): socket.io-client
// 4, or with PROTOCOL=0.9 socket.io-client 0.9.17 (the ActiveStack SDKs' client, installed as
// `socket.io-client-legacy`, with the SDK's options). Each sends
// `message {connect:{}}`, waits for `gatewayConnectAck`, then loops: emit `testCall` with a
// unique messageId, wait for the `push` with that correspondingMessageId, ack it with
// `message {ack:{correspondingMessageId}}`, next. Closed loop, one request in flight per client.
// Bounded: connect phase <= CONNECT_TIMEOUT s, measure phase <= DURATION s and <= MAX_RT round
// trips in total. CPU: utime+stime of PIDS (comma list) from /proc/<pid>/stat, read at the start
// and end of the measure phase.
// Usage: [PROTOCOL=v4|0.9] node load.js URL CLIENTS DURATION_S PIDS [MAX_RT]
//        -> one JSON line on stdout
// Idle mode (bench/idle.sh): IDLE_HOLD=S connects the clients, sends no request and holds them
// S seconds through the server's heartbeats; the JSON line then has the RSS of PIDS (summed,
// from /proc/<pid>/status) before the clients, once all are connected and after the hold, and
// the disconnects seen during the hold.
"use strict";
const fs = require("fs");

const [url, nArg, durArg, pidsArg, maxArg] = process.argv.slice(2);
const N = parseInt(nArg, 10);
const DURATION = parseFloat(durArg) * 1000;
const PIDS = (pidsArg || "").split(",").filter(Boolean).map(Number);
const MAX_RT = parseInt(maxArg || "2000000", 10);
const CONNECT_TIMEOUT = parseFloat(process.env.CONNECT_TIMEOUT || "60") * 1000;
const CONNECT_BATCH = parseInt(process.env.CONNECT_BATCH || "50", 10);
const CLK_TCK = parseInt(process.env.CLK_TCK || "100", 10);
const PROTOCOL = process.env.PROTOCOL || "v4";
if (PROTOCOL !== "v4" && PROTOCOL !== "0.9") {
  console.error(`PROTOCOL is v4 or 0.9, not ${PROTOCOL}`);
  process.exit(2);
}

/// A new socket, connecting; `onFailure(message)` if it cannot connect.
function open(onFailure) {
  if (PROTOCOL === "0.9") {
    // ActiveSDKJavaScript src/ActiveStackClient.js's options.
    const s = require("socket.io-client-legacy").connect(url, {
      "force new connection": true, reconnect: false, "try multiple transports": false,
      "connect timeout": 20000,
    });
    s.on("error", (e) => { if (!s.socket.connected) onFailure(String(e)); });
    s.on("connect_failed", () => onFailure("connect_failed"));
    s.close = () => s.disconnect();
    return s;
  }
  const s = require("socket.io-client").io(url, { transports: ["websocket"], reconnection: false, forceNew: true, timeout: 20000 });
  s.on("connect_error", (e) => onFailure(e.message));
  return s;
}

// Other processes to account for (where the 2 cores went): OTHER_PIDS="agent:123,rabbitmq:456".
const OTHER = (process.env.OTHER_PIDS || "").split(",").filter(Boolean).map((x) => x.split(":"));

/// Resident set size of PIDS summed, in bytes.
function rss(pids = PIDS) {
  let sum = 0;
  for (const pid of pids) {
    try {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
      if (m) sum += parseInt(m[1], 10) * 1024;
    } catch (_) { /* gone */ }
  }
  return sum;
}

function cpuTicks(pids = PIDS) {
  let sum = 0;
  for (const pid of pids) {
    try {
      const s = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
      sum += parseInt(f[11], 10) + parseInt(f[12], 10); // utime, stime (fields 14, 15)
    } catch (_) { /* gone */ }
  }
  return sum;
}

const lat = new Float64Array(MAX_RT);
let done = 0, measuring = false, stopped = false, duplicates = 0, errors = 0, disconnects = 0;
const sockets = [];

function connectOne(i) {
  return new Promise((resolve, reject) => {
    const s = open((message) => reject(new Error(`client ${i}: ${message}`)));
    const c = { s, seq: 0, pendingId: null, sentAt: 0 };
    s.on("disconnect", () => { if (!stopped) disconnects++; });
    s.on("gatewayError", () => { errors++; });
    s.once("gatewayConnectAck", () => { sockets.push(c); resolve(c); });
    s.on("push", (p) => {
      const id = p && p.correspondingMessageId;
      if (id === undefined) return;
      s.emit("message", { ack: { correspondingMessageId: id } });
      if (id !== c.pendingId) { duplicates++; return; } // a re-send of an already acked push
      c.pendingId = null;
      if (measuring && done < MAX_RT) lat[done++] = performance.now() - c.sentAt;
      if (!stopped) send(c, i);
    });
    s.on("connect", () => s.emit("message", { connect: {} }));
  });
}

function send(c, i) {
  if (stopped || (measuring && done >= MAX_RT)) return;
  c.pendingId = `c${i}-${++c.seq}`;
  c.sentAt = performance.now();
  c.s.emit("testCall", { cn: "TestCall", messageId: c.pendingId });
}

const IDLE_HOLD = parseFloat(process.env.IDLE_HOLD || "0") * 1000;

(async () => {
  const rssIdle = rss();
  const t0 = Date.now();
  const guard = setTimeout(() => { console.error("connect phase timed out"); process.exit(2); }, CONNECT_TIMEOUT);
  for (let i = 0; i < N; i += CONNECT_BATCH) {
    const batch = [];
    for (let j = i; j < Math.min(N, i + CONNECT_BATCH); j++) batch.push(connectOne(j));
    await Promise.all(batch);
  }
  clearTimeout(guard);
  const connectMs = Date.now() - t0;
  if (IDLE_HOLD > 0) return idle(rssIdle, connectMs);
  // Warm-up: 500 ms of load not counted.
  sockets.forEach((c, i) => send(c, i));
  await new Promise((r) => setTimeout(r, 500));
  const cpu0 = cpuTicks();
  const other0 = OTHER.map(([, pid]) => cpuTicks([Number(pid)]));
  const self0 = process.cpuUsage();
  const m0 = performance.now();
  measuring = true;
  console.error("measuring"); // bench/profile.sh starts perf on this line
  await new Promise((r) => {
    const end = setTimeout(r, DURATION);
    const poll = setInterval(() => { if (done >= MAX_RT) { clearTimeout(end); clearInterval(poll); r(); } }, 50);
    setTimeout(() => clearInterval(poll), DURATION + 10);
  });
  measuring = false;
  const elapsed = (performance.now() - m0) / 1000;
  const cpu1 = cpuTicks();
  const selfCpu = process.cpuUsage(self0);
  const otherCpu = { loadgen: +((selfCpu.user + selfCpu.system) / 1e6).toFixed(2) };
  OTHER.forEach(([name, pid], k) => { otherCpu[name] = +((cpuTicks([Number(pid)]) - other0[k]) / CLK_TCK).toFixed(2); });
  stopped = true;
  const l = Array.from(lat.subarray(0, done)).sort((a, b) => a - b);
  const q = (p) => (l.length ? l[Math.min(l.length - 1, Math.floor(p * l.length))] : null);
  const cpuUs = ((cpu1 - cpu0) * 1e6) / CLK_TCK;
  const out = {
    protocol: PROTOCOL, clients: N, connectMs, seconds: +elapsed.toFixed(3), roundTrips: done,
    rtPerSec: +(done / elapsed).toFixed(1),
    p50ms: q(0.5), p99ms: q(0.99), maxms: l.length ? l[l.length - 1] : null,
    cpuSec: cpuUs / 1e6, cpuUsPerRt: done ? +(cpuUs / done).toFixed(1) : null,
    otherCpuSec: otherCpu, pids: PIDS, duplicates, gatewayErrors: errors, disconnects,
  };
  for (const k of ["p50ms", "p99ms", "maxms"]) if (out[k] !== null) out[k] = +out[k].toFixed(3);
  process.stdout.write(JSON.stringify(out) + "\n");
  for (const c of sockets) c.s.close();
  setTimeout(() => process.exit(0), 200);
})().catch((e) => { console.error(e.message || e); process.exit(1); });

/// Idle mode: the connected clients held through heartbeats, the servers' memory measured.
async function idle(rssIdle, connectMs) {
  await new Promise((r) => setTimeout(r, 1000)); // let the last acks and queue consumers settle
  const rssConnected = rss();
  const before = disconnects;
  await new Promise((r) => setTimeout(r, IDLE_HOLD));
  const rssHeld = rss();
  stopped = true;
  const out = {
    protocol: PROTOCOL, clients: N, connectMs, clientsPerSec: +((N * 1000) / connectMs).toFixed(1),
    holdSeconds: IDLE_HOLD / 1000, rssIdle, rssConnected, rssHeld,
    bytesPerClient: Math.round((rssHeld - rssIdle) / N), pids: PIDS,
    disconnectsDuringHold: disconnects - before, gatewayErrors: errors,
  };
  process.stdout.write(JSON.stringify(out) + "\n");
  for (const c of sockets) c.s.close();
  setTimeout(() => process.exit(0), 500);
}
