#!/usr/bin/env node
// Reference baseline for bench/supervisor.py: the same supervision job done the way people do it
// with plain Node `cluster` (PM2-like): node >= 18, standard library only.
//
//   node bench/node-cluster/cluster.js [--config FILE] [--port 18080] [--workers 2] ...
//
// The primary forks N workers that share the port (default cluster scheduling, i.e. round-robin
// in the primary on Linux). Every heartbeatInterval it sends each worker {type:'ping'} over the
// cluster IPC channel and the worker answers {type:'pong'}; a watchdog every watchdogInterval
// SIGKILLs a worker silent for more than workerTimeout. An exited worker is replaced after
// random() * (2^min(failures, maxRestartBackoff) - 1) * workerRestartDelay ms (failures counted
// per slot, reset at the new worker's first pong). SIGHUP = rolling restart: fork the new worker,
// wait for its 'listening', then disconnect() the old one (killed if not gone after drainTimeout).
// SIGTERM/SIGINT = graceful stop.
//
// Parameters (flag > environment > --config .properties file > default):
//   --host            NODE_CLUSTER_HOST          frontend.host              127.0.0.1
//   --port            NODE_CLUSTER_PORT          frontend.port              18080
//   --workers         NODE_CLUSTER_WORKERS       cluster.workerCount        2
//   --heartbeat       NODE_CLUSTER_HEARTBEAT     cluster.heartbeatInterval  100   (ms)
//   --worker-timeout  NODE_CLUSTER_WORKER_TIMEOUT cluster.workerTimeout     500   (ms)
//   --watchdog        NODE_CLUSTER_WATCHDOG      cluster.watchdogInterval   100   (ms)
//   --restart-delay   NODE_CLUSTER_RESTART_DELAY cluster.workerRestartDelay 50    (ms)
//   --max-backoff     NODE_CLUSTER_MAX_BACKOFF   cluster.maxRestartBackoff  10
//   --drain-timeout   NODE_CLUSTER_DRAIN_TIMEOUT cluster.drainTimeout       5000  (ms)
//   --status-file     NODE_CLUSTER_STATUS_FILE   (none)                     (none)
//
// Observability for the benchmark: one JSON line per event on stdout, and (with --status-file)
// a JSON status document shaped like `activestack-gateway status --json`, rewritten atomically
// on every change.
'use strict';

const cluster = require('node:cluster');
const fs = require('node:fs');
const http = require('node:http');

const OPTIONS = {
  host: ['NODE_CLUSTER_HOST', 'frontend.host', '127.0.0.1', String],
  port: ['NODE_CLUSTER_PORT', 'frontend.port', 18080, Number],
  workers: ['NODE_CLUSTER_WORKERS', 'cluster.workerCount', 2, Number],
  heartbeat: ['NODE_CLUSTER_HEARTBEAT', 'cluster.heartbeatInterval', 100, Number],
  'worker-timeout': ['NODE_CLUSTER_WORKER_TIMEOUT', 'cluster.workerTimeout', 500, Number],
  watchdog: ['NODE_CLUSTER_WATCHDOG', 'cluster.watchdogInterval', 100, Number],
  'restart-delay': ['NODE_CLUSTER_RESTART_DELAY', 'cluster.workerRestartDelay', 50, Number],
  'max-backoff': ['NODE_CLUSTER_MAX_BACKOFF', 'cluster.maxRestartBackoff', 10, Number],
  'drain-timeout': ['NODE_CLUSTER_DRAIN_TIMEOUT', 'cluster.drainTimeout', 5000, Number],
  'status-file': ['NODE_CLUSTER_STATUS_FILE', null, '', String],
};

function readProperties(file) {
  const props = {};
  if (!file) return props;
  for (const raw of fs.readFileSync(file, 'utf8').split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith('!')) continue;
    const m = /^([^=:\s]+)\s*[=:\s]\s*(.*)$/.exec(line);
    if (m) props[m[1]] = m[2];
  }
  return props;
}

function parseOptions(argv) {
  const flags = {};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) throw new Error(`unexpected argument ${argv[i]}`);
    flags[m[1]] = m[2] !== undefined ? m[2] : argv[++i];
  }
  const props = readProperties(flags.config);
  const opts = {};
  for (const [name, [env, key, def, type]] of Object.entries(OPTIONS)) {
    let value = def;
    if (key && props[key] !== undefined) value = props[key];
    if (process.env[env] !== undefined) value = process.env[env];
    if (flags[name] !== undefined) value = flags[name];
    opts[name] = type(value);
    if (type === Number && !Number.isFinite(opts[name])) throw new Error(`--${name}: not a number`);
  }
  for (const name of Object.keys(flags)) {
    if (name !== 'config' && !(name in OPTIONS)) throw new Error(`unknown option --${name}`);
  }
  return opts;
}

// ---------------------------------------------------------------------------------------------
// Worker: serves GET /health, answers heartbeats. On disconnect() from the primary, the cluster
// module closes the server (no new connections) and the process exits once in-flight ones end.

function runWorker() {
  const slot = Number(process.env.SLOT);
  const generation = Number(process.env.GENERATION);
  const host = process.env.HOST;
  const port = Number(process.env.PORT);
  let clients = 0;

  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/health') {
      const body = JSON.stringify({ worker: slot, pid: process.pid, generation, clients });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    } else {
      res.writeHead(404, { 'content-length': 0 });
      res.end();
    }
  });
  server.on('connection', (socket) => {
    clients++;
    socket.on('close', () => clients--);
  });
  server.listen(port, host);

  process.on('message', (msg) => {
    if (msg && msg.type === 'ping' && process.connected) {
      process.send({ type: 'pong', seq: msg.seq, clients, rss: process.memoryUsage.rss() });
    }
  });
  // A SIGTERM sent to the worker directly: finish what is in flight, then go.
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

// ---------------------------------------------------------------------------------------------
// Primary.

function runPrimary(opts) {
  const started = Date.now();
  let generation = 1;
  let phase = 'starting';
  const slots = Array.from({ length: opts.workers }, () => ({ worker: null, failures: 0, restarts: 0, timer: null }));
  const meta = new Map(); // worker.id -> {slot, generation, state, lastSeen, answered, retiring}

  const emit = (event, fields) => {
    process.stdout.write(JSON.stringify({ t: Date.now(), event, ...fields }) + '\n');
    writeStatus();
  };

  function writeStatus() {
    if (!opts['status-file']) return;
    const now = Date.now();
    const workers = [];
    for (const w of Object.values(cluster.workers)) {
      const m = meta.get(w.id);
      if (!m || m.state === 'exited') continue;
      workers.push({
        slot: m.slot,
        pid: w.process.pid,
        generation: m.generation,
        state: m.state,
        uptime_ms: now - m.started,
        heartbeat_age_ms: m.answered ? now - m.lastSeen : null,
        restarts: slots[m.slot] ? slots[m.slot].restarts : 0,
      });
    }
    const doc = {
      master_pid: process.pid,
      generation,
      listen: `${opts.host}:${opts.port}`,
      phase,
      uptime_ms: now - started,
      desired_workers: opts.workers,
      workers,
    };
    const tmp = `${opts['status-file']}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(doc));
    fs.renameSync(tmp, opts['status-file']);
  }

  function updatePhase() {
    if (phase === 'stopping') return;
    const all = slots.every((s) => {
      const m = s.worker && meta.get(s.worker.id);
      return m && m.state === 'ready' && m.generation === generation;
    });
    const retiring = [...meta.values()].some((m) => m.retiring && m.state !== 'exited');
    // Like the gateway: 'starting'/'reloading' until every slot has a ready worker of the current
    // generation (and, here, the old ones are gone); a later crash does not change the phase.
    if (phase === 'running' || !all || retiring) return;
    const next = 'running';
    if (next !== phase) {
      phase = next;
      emit('phase', { phase, generation });
    }
  }

  function fork(index) {
    const slot = slots[index];
    const w = cluster.fork({ SLOT: index, GENERATION: generation, HOST: opts.host, PORT: opts.port });
    const m = { slot: index, generation, state: 'starting', started: Date.now(), lastSeen: Date.now(), answered: false, retiring: false };
    meta.set(w.id, m);
    w.on('listening', () => {
      m.state = 'ready';
      emit('ready', { slot: index, pid: w.process.pid, generation: m.generation });
      if (slot.successor === w) promote(index);
      updatePhase();
    });
    w.on('message', (msg) => {
      if (msg && msg.type === 'pong') {
        m.lastSeen = Date.now();
        if (!m.answered) {
          m.answered = true;
          if (slot.worker === w || slot.successor === w) slot.failures = 0;
          writeStatus();
        }
      }
    });
    w.on('error', () => {}); // IPC write to a dead worker; its 'exit' follows
    emit('fork', { slot: index, pid: w.process.pid, generation });
    return w;
  }

  // Rolling restart of one slot: the successor is listening, now retire the old worker.
  function promote(index) {
    const slot = slots[index];
    const old = slot.worker;
    slot.worker = slot.successor;
    slot.successor = null;
    if (old && !old.isDead()) retire(old);
  }

  function retire(w) {
    const m = meta.get(w.id);
    if (!m || m.retiring) return;
    m.retiring = true;
    m.state = 'draining';
    emit('draining', { slot: m.slot, pid: w.process.pid });
    const kill = setTimeout(() => {
      if (!w.isDead()) {
        emit('drain-timeout', { pid: w.process.pid });
        w.process.kill('SIGKILL');
      }
    }, opts['drain-timeout']);
    kill.unref();
    w.disconnect();
  }

  function scheduleRestart(index) {
    const slot = slots[index];
    if (slot.timer || phase === 'stopping') return;
    const exp = Math.min(slot.failures, opts['max-backoff'], 30);
    const delay = Math.random() * (2 ** exp - 1) * opts['restart-delay'];
    slot.failures++;
    slot.restarts++;
    emit('restart-scheduled', { slot: index, failures: slot.failures, delay_ms: Math.round(delay) });
    slot.timer = setTimeout(() => {
      slot.timer = null;
      if (phase === 'stopping') return;
      if (!slot.worker) {
        slot.worker = fork(index);
      } else if (!slot.successor && meta.get(slot.worker.id)?.generation < generation) {
        slot.successor = fork(index); // a rolling restart whose new worker died: try again
      }
    }, delay);
  }

  cluster.on('exit', (w, code, signal) => {
    const m = meta.get(w.id);
    if (!m) return;
    m.state = 'exited';
    meta.delete(w.id);
    emit('exit', { slot: m.slot, pid: w.process.pid, code, signal, retiring: m.retiring });
    const slot = slots[m.slot];
    if (phase === 'stopping') {
      if (Object.keys(cluster.workers).length === 0) process.exit(0);
      return;
    }
    if (slot.successor === w) {
      slot.successor = null;
      scheduleRestart(m.slot);
    }
    if (slot.worker === w) {
      slot.worker = null;
      if (slot.successor) {
        // Died during a rolling restart: the successor takes over when it is listening.
        slot.worker = slot.successor;
        slot.successor = null;
      } else {
        scheduleRestart(m.slot);
      }
    }
    updatePhase();
  });

  let seq = 0;
  setInterval(() => {
    seq++;
    for (const w of Object.values(cluster.workers)) {
      const m = meta.get(w.id);
      if (m && !m.retiring && m.state !== 'killed' && w.isConnected()) w.send({ type: 'ping', seq }, () => {});
    }
  }, opts.heartbeat);

  setInterval(() => {
    const now = Date.now();
    for (const w of Object.values(cluster.workers)) {
      const m = meta.get(w.id);
      if (!m || m.retiring || m.state === 'killed' || m.state === 'exited') continue;
      if (now - m.lastSeen > opts['worker-timeout']) {
        m.state = 'killed';
        emit('hung', { slot: m.slot, pid: w.process.pid, silent_ms: now - m.lastSeen });
        w.process.kill('SIGKILL');
      }
    }
  }, opts.watchdog);

  process.on('SIGHUP', () => {
    if (phase === 'stopping') return;
    generation++;
    phase = 'reloading';
    emit('reload', { generation });
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i];
      if (slot.successor && !slot.successor.isDead()) retire(slot.successor);
      if (slot.worker) slot.successor = fork(i);
      else if (!slot.timer) slot.worker = fork(i);
    }
    updatePhase();
  });

  const stop = () => {
    if (phase === 'stopping') return;
    phase = 'stopping';
    emit('phase', { phase });
    for (const s of slots) clearTimeout(s.timer);
    if (Object.keys(cluster.workers).length === 0) process.exit(0);
    for (const w of Object.values(cluster.workers)) retire(w);
    setTimeout(() => process.exit(1), opts['drain-timeout'] + 1000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  emit('primary', { pid: process.pid, opts });
  for (let i = 0; i < slots.length; i++) slots[i].worker = fork(i);
}

if (cluster.isPrimary) {
  let opts;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`cluster.js: ${e.message}\n`);
    process.exit(2);
  }
  runPrimary(opts);
} else {
  runWorker();
}
