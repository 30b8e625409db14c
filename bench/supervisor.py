#!/usr/bin/env python3
"""Supervisor benchmark: activestack-gateway vs a plain Node `cluster` baseline.

Same scenario, same parameters, both implementations, one run (see bench/README.md):

  1. hung worker (SIGSTOP)   -> time until a never-seen pid answers /health
  2. crashed worker (SIGKILL) -> time until a never-seen pid answers /health
  3. connection spread over the workers (2 and 4 workers)
  4. 10 SIGHUP rolling restarts while 8 clients hammer /health

Python 3 standard library for the measuring; matplotlib only for the plot (optional).
Loopback only; every load loop is bounded in count and in time.
"""

import argparse
import asyncio
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOST = "127.0.0.1"
REQUEST = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"

# The supervision parameters both implementations run with (ms, except maxRestartBackoff).
PARAMS = {
    "heartbeatInterval": 100,
    "workerTimeout": 500,
    "watchdogInterval": 100,
    "workerRestartDelay": 50,
    "maxRestartBackoff": 10,
    "drainTimeout": 5000,
}
HUNG_BOUND_MS = PARAMS["workerTimeout"] + PARAMS["watchdogInterval"] + 100
CRASH_TARGET_MS = 15.0

now = time.perf_counter
RNG = random.Random(1)  # reseeded from --seed in main()


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# HTTP, one new connection per request


class BadResponse(Exception):
    pass


def parse_response(data):
    """(status, json body) of a complete HTTP/1.1 response read until EOF."""
    if not data:
        raise BadResponse("empty")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise BadResponse("truncated")
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise BadResponse("bad_status_line")
    status = int(parts[1])
    if status != 200:
        raise BadResponse(f"http_{status}")
    try:
        return status, json.loads(body)
    except ValueError:
        raise BadResponse("bad_body") from None


def classify(exc):
    if isinstance(exc, BadResponse):
        return str(exc)
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset"
    if isinstance(exc, (socket.timeout, TimeoutError, asyncio.TimeoutError)):
        return "timeout"
    return type(exc).__name__


def get_health(port, timeout):
    """Blocking GET /health on a new connection -> body dict; raises on any failure."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(REQUEST)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return parse_response(b"".join(chunks))[1]


async def aget_health(port, timeout):
    """Asyncio GET /health on a new connection -> (body or None, error kind or None)."""
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
        writer.write(REQUEST)
        data = await asyncio.wait_for(reader.read(), timeout)
        return parse_response(data)[1], None
    except Exception as e:  # noqa: BLE001 - every failure is a data point
        return None, classify(e)
    finally:
        if writer is not None:
            writer.close()


def port_is_free(port):
    try:
        socket.create_connection((HOST, port), timeout=0.5).close()
        return False
    except OSError:
        return True


def pid_alive(pid):
    """True if the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def pctl(values, p):
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(values):
    return {
        "n": len(values),
        "median": pctl(values, 50),
        "p90": pctl(values, 90),
        "max": max(values) if values else None,
        "min": min(values) if values else None,
        "values": values,
    }


# ---------------------------------------------------------------------------------------------
# The two implementations, behind one small interface


class Cluster:
    name = "?"

    def __init__(self, port, workers, tmp):
        self.port = port
        self.workers = workers
        self.dir = tempfile.mkdtemp(prefix=f"{self.key}-{workers}w-", dir=tmp)
        self.proc = None
        self.seen_pids = set()

    # -- to implement
    def command(self):
        raise NotImplementedError

    def status(self):
        raise NotImplementedError

    # -- common
    def start(self, timeout=20.0):
        if not port_is_free(self.port):
            raise RuntimeError(f"port {self.port} is in use: something else listens there")
        self.stdout = open(os.path.join(self.dir, "stdout.log"), "wb")
        self.stderr = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.proc = subprocess.Popen(
            self.command(), cwd=ROOT, stdout=self.stdout, stderr=self.stderr,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log(f"{self.name}: started master pid {self.proc.pid} ({self.workers} workers, port {self.port}), logs in {self.dir}")
        self.wait_settled(timeout)

    @property
    def master_pid(self):
        return self.proc.pid

    def worker_pids(self, st=None):
        st = st or self.status()
        pids = [w["pid"] for w in (st or {}).get("workers", [])]
        self.seen_pids.update(pids)
        return pids

    def is_settled(self, st, need_answered=True):
        """Phase running, exactly N workers, all ready, of the current generation (and, when
        need_answered, each has answered a heartbeat, so its slot's backoff counter is reset)."""
        if not st or st.get("phase") != "running":
            return False
        ws = st.get("workers", [])
        if len(ws) != self.workers:
            return False
        for w in ws:
            if w["state"] != "ready" or w["generation"] != st["generation"]:
                return False
            if need_answered and w.get("heartbeat_age_ms") is None:
                return False
        return True

    def wait_settled(self, timeout=20.0, need_answered=True, poll=0.02):
        deadline = now() + timeout
        st = None
        while now() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: master exited with {self.proc.returncode}; see {self.dir}")
            st = self.status()
            if self.is_settled(st, need_answered):
                self.worker_pids(st)
                return st
            time.sleep(poll)
        raise RuntimeError(f"{self.name}: not settled after {timeout}s; last status: {json.dumps(st)}")

    def stop(self, timeout=15.0):
        """SIGTERM (graceful), then SIGKILL for the whole process group. Returns the time the
        graceful stop took (s), or None if it had to be killed."""
        if self.proc is None:
            return None
        took = None
        if self.proc.poll() is None:
            # A blocking wait() in a thread: Popen.wait(timeout) polls (up to 50 ms late).
            waiter = threading.Thread(target=self.proc.wait, daemon=True)
            t0 = now()
            self.proc.send_signal(signal.SIGTERM)
            waiter.start()
            waiter.join(timeout)
            if self.proc.returncode is not None:
                took = now() - t0
            else:
                log(f"{self.name}: did not stop within {timeout}s after SIGTERM; SIGKILL")
        # Whatever is left in its process group (workers included) goes.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for pid in list(self.seen_pids):
            if pid_alive(pid):
                log(f"{self.name}: worker {pid} still alive after stop; SIGKILL")
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        self.stdout.close()
        self.stderr.close()
        return took


class Gateway(Cluster):
    name = "activestack-gateway"
    key = "gateway"

    def __init__(self, binary, extra, *args):
        self.binary = binary
        super().__init__(*args)
        self.conf = os.path.join(self.dir, "gateway.properties")
        lines = [
            f"frontend.host={HOST}",
            f"frontend.port={self.port}",
            "frontend.logLevel=info",
            f"cluster.workerCount={self.workers}",
        ] + [f"cluster.{k}={v}" for k, v in PARAMS.items()] + [
            f"cluster.controlSocket={os.path.join(self.dir, 'control.sock')}",
        ] + list(extra)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def command(self):
        return [self.binary, "server", self.conf]

    def status(self):
        try:
            out = subprocess.run(
                [self.binary, "status", self.conf, "--json"],
                capture_output=True, timeout=3, check=False,
            )
        except subprocess.TimeoutExpired:
            return None
        if out.returncode != 0:
            return None
        try:
            return json.loads(out.stdout)
        except ValueError:
            return None


class NodeCluster(Cluster):
    name = "node cluster"
    key = "node"

    def __init__(self, node, *args):
        self.node = node
        super().__init__(*args)
        self.status_file = os.path.join(self.dir, "status.json")

    def command(self):
        flags = {
            "host": HOST,
            "port": self.port,
            "workers": self.workers,
            "heartbeat": PARAMS["heartbeatInterval"],
            "worker-timeout": PARAMS["workerTimeout"],
            "watchdog": PARAMS["watchdogInterval"],
            "restart-delay": PARAMS["workerRestartDelay"],
            "max-backoff": PARAMS["maxRestartBackoff"],
            "drain-timeout": PARAMS["drainTimeout"],
            "status-file": self.status_file,
        }
        cmd = [self.node, os.path.join(HERE, "node-cluster", "cluster.js")]
        for k, v in flags.items():
            cmd += [f"--{k}", str(v)]
        return cmd

    def status(self):
        try:
            with open(self.status_file) as f:
                st = json.load(f)
        except (OSError, ValueError):
            return None
        # The file is rewritten on every event; heartbeat ages are as of that write.
        return st


# ---------------------------------------------------------------------------------------------
# 1 + 2: time from a signal to a worker (a pid never seen before) answering /health


async def time_to_new_pid(c, victim, sig, deadline_s, interval=0.001, max_inflight=400, probe_timeout=2.0):
    """Sends `sig` to `victim`, then starts a /health probe every `interval` on a new connection
    each; returns when a response comes from a pid not in c.seen_pids. Bounded by deadline_s."""
    loop = asyncio.get_running_loop()
    found = loop.create_future()
    old = set(c.seen_pids)
    inflight = set()
    counts = {"sent": 0, "ok": 0, "failed": 0, "errors": {}}
    gone = {"t": None}
    t0 = None

    async def probe():
        body, err = await aget_health(c.port, probe_timeout)
        t = now()
        if body is None:
            counts["failed"] += 1
            counts["errors"][err] = counts["errors"].get(err, 0) + 1
            return
        counts["ok"] += 1
        pid = body.get("pid")
        if pid not in old:
            c.seen_pids.add(pid)
            if not found.done():
                found.set_result((t, pid))

    async def watch_victim():
        while pid_alive(victim) and now() - t0 < deadline_s:
            await asyncio.sleep(0.002)
        if not pid_alive(victim):
            gone["t"] = now()

    t0 = now()
    os.kill(victim, sig)
    watcher = asyncio.create_task(watch_victim())
    end = t0 + deadline_s
    while not found.done() and now() < end:
        if len(inflight) < max_inflight:
            task = asyncio.create_task(probe())
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            counts["sent"] += 1
        await asyncio.sleep(interval)
    result = found.result() if found.done() else None
    # Give the probes in flight a moment to finish (they are counted), then drop the rest.
    if inflight:
        await asyncio.wait(set(inflight), timeout=0.5)
    for task in list(inflight):
        task.cancel()
    if inflight:
        await asyncio.gather(*inflight, return_exceptions=True)
    counts["unfinished"] = len(inflight)
    if not watcher.done():
        await asyncio.wait({watcher}, timeout=0.2)
        watcher.cancel()
    return {
        "ms": (result[0] - t0) * 1000 if result else None,
        "new_pid": result[1] if result else None,
        "victim_gone_ms": (gone["t"] - t0) * 1000 if gone["t"] else None,
        "probes": counts,
    }


def failure_rounds(c, sig, rounds, deadline_s):
    out = []
    for i in range(rounds):
        st = c.wait_settled(20.0)
        # Backoff counters reset at the first heartbeat answer; let a couple more pass. Then a
        # random part of a heartbeat interval, so the signal does not always land at the same
        # phase of the master's heartbeat/watchdog ticks (settling is itself tick-aligned).
        time.sleep(2 * PARAMS["heartbeatInterval"] / 1000)
        time.sleep(RNG.uniform(0, PARAMS["heartbeatInterval"] / 1000))
        st = c.status()
        ws = sorted(st["workers"], key=lambda w: w["slot"])
        victim = ws[i % len(ws)]["pid"]
        c.worker_pids(st)
        r = asyncio.run(time_to_new_pid(c, victim, sig, deadline_s))
        r["victim"] = victim
        still = pid_alive(victim)
        r["victim_still_alive_after"] = still
        if still:
            log(f"{c.name}: victim {victim} still alive after the round; SIGKILL + SIGCONT")
            os.kill(victim, signal.SIGKILL)
            os.kill(victim, signal.SIGCONT)
        out.append(r)
        ms = f"{r['ms']:.1f} ms" if r["ms"] is not None else "NOT REPLACED"
        gone = f"{r['victim_gone_ms']:.0f} ms" if r["victim_gone_ms"] is not None else "-"
        log(f"{c.name}: {signal.Signals(sig).name} #{i + 1}: new pid {r['new_pid']} serving after {ms} "
            f"(victim gone after {gone}; probes ok={r['probes']['ok']} failed={r['probes']['failed']} {r['probes']['errors']})")
    return out


# ---------------------------------------------------------------------------------------------
# 3: connection spread


def spread(c, total=5000, clients=8, deadline_s=60.0, timeout=5.0):
    st = c.wait_settled(20.0)
    pids = c.worker_pids(st)
    counts = {pid: 0 for pid in pids}
    errors = {}
    lock = threading.Lock()
    issued = [0]
    end = now() + deadline_s

    def client():
        while True:
            with lock:
                if issued[0] >= total or now() > end:
                    return
                issued[0] += 1
            try:
                pid = get_health(c.port, timeout)["pid"]
                with lock:
                    counts[pid] = counts.get(pid, 0) + 1
            except Exception as e:  # noqa: BLE001
                with lock:
                    k = classify(e)
                    errors[k] = errors.get(k, 0) + 1

    t0 = now()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(deadline_s + timeout + 5)
    elapsed = now() - t0
    done = sum(counts.values())
    shares = sorted((v / done for v in counts.values()), reverse=True) if done else []
    mean = statistics.mean(counts.values()) if counts else 0
    cv = statistics.pstdev(counts.values()) / mean if mean else None
    r = {
        "workers": c.workers,
        "clients": clients,
        "requests": done,
        "errors": errors,
        "per_pid": {str(k): v for k, v in counts.items()},
        "shares": shares,
        "min_share": min(shares) if shares else None,
        "max_share": max(shares) if shares else None,
        "cv": cv,
        "seconds": elapsed,
        "rps": done / elapsed if elapsed else None,
    }
    log(f"{c.name}: spread over {c.workers} workers: {done} requests in {elapsed:.2f}s, "
        f"shares {[round(s, 3) for s in shares]}, CV {cv:.3f}, errors {errors}")
    return r


# ---------------------------------------------------------------------------------------------
# 4: SIGHUP rolling restarts under load


def sighup_under_load(c, reloads=10, clients=8, timeout=5.0, max_requests=400_000,
                      reload_deadline_s=20.0, warmup_s=1.0, tail_s=1.0, poll=0.025):
    c.wait_settled(20.0)
    stop = threading.Event()
    lock = threading.Lock()
    issued = [0]
    per_thread = []
    t_start = now()
    hard_end = t_start + warmup_s + tail_s + reloads * reload_deadline_s + 10

    def client(rec):
        while not stop.is_set() and now() < hard_end:
            with lock:
                if issued[0] >= max_requests:
                    return
                issued[0] += 1
            t0 = now()
            try:
                body = get_health(c.port, timeout)
                rec["lat"].append(now() - t0)
                rec["t"].append(t0 - t_start)
                rec["pids"].add(body["pid"])
            except Exception as e:  # noqa: BLE001
                k = classify(e)
                rec["errors"][k] = rec["errors"].get(k, 0) + 1
                rec["fail_t"].append((t0 - t_start, k))

    threads = []
    for _ in range(clients):
        rec = {"lat": [], "t": [], "errors": {}, "fail_t": [], "pids": set()}
        per_thread.append(rec)
        threads.append(threading.Thread(target=client, args=(rec,), daemon=True))
    for t in threads:
        t.start()

    time.sleep(warmup_s)
    reload_ms = []
    reload_marks = []
    incomplete = 0
    for i in range(reloads):
        st = c.status()
        gen = st["generation"] if st else None
        t0 = now()
        os.kill(c.master_pid, signal.SIGHUP)
        deadline = t0 + reload_deadline_s
        done = False
        while now() < deadline:
            st = c.status()
            if st and gen is not None and st["generation"] == gen + 1 and c.is_settled(st, need_answered=False):
                done = True
                c.worker_pids(st)
                break
            time.sleep(poll)
        took = now() - t0
        reload_marks.append((t0 - t_start, now() - t_start))
        if done:
            reload_ms.append(took * 1000)
            log(f"{c.name}: SIGHUP #{i + 1}: generation {gen} -> {gen + 1} in {took * 1000:.0f} ms")
        else:
            incomplete += 1
            log(f"{c.name}: SIGHUP #{i + 1}: reload NOT complete after {reload_deadline_s}s; last status {json.dumps(st)}")
        if now() > hard_end:
            break
    time.sleep(tail_s)
    stop.set()
    for t in threads:
        t.join(timeout + 5)
    total_s = now() - t_start

    lat = [x for rec in per_thread for x in rec["lat"]]
    errors = {}
    for rec in per_thread:
        for k, v in rec["errors"].items():
            errors[k] = errors.get(k, 0) + v
    failed = sum(errors.values())
    pids = set().union(*(rec["pids"] for rec in per_thread))
    c.seen_pids.update(pids)
    timeline = sorted(
        (round(t, 4), round(l * 1000, 3)) for rec in per_thread for t, l in zip(rec["t"], rec["lat"])
    )
    fails = sorted(f for rec in per_thread for f in rec["fail_t"])
    r = {
        "reloads_sent": len(reload_marks),
        "reloads_incomplete": incomplete,
        "reload_ms": summary(reload_ms),
        "clients": clients,
        "requests": len(lat) + failed,
        "ok": len(lat),
        "failed": failed,
        "errors": errors,
        "refused_or_reset": errors.get("refused", 0) + errors.get("reset", 0),
        "latency_ms": {
            "p50": pctl(lat, 50) * 1000 if lat else None,
            "p99": pctl(lat, 99) * 1000 if lat else None,
            "max": max(lat) * 1000 if lat else None,
        },
        "total_s": total_s,
        "rps": len(lat) / total_s if total_s else None,
        "distinct_pids_served": len(pids),
        "reload_marks_s": reload_marks,
        "failures_t": fails[:2000],
        "timeline": timeline,
    }
    log(f"{c.name}: SIGHUP x{reloads} under load: {r['requests']} requests, {failed} failed {errors}, "
        f"p50 {r['latency_ms']['p50']:.2f} ms, p99 {r['latency_ms']['p99']:.2f} ms, {total_s:.1f}s")
    return r


# ---------------------------------------------------------------------------------------------
# Running it all


def run_all(impls, args, results):
    """Runs every scenario on each implementation in turn, scenario by scenario (gateway, node,
    gateway, node, ...), so that noise from other work on the machine hits both sides alike. The
    clusters of one size run side by side; the one not being measured is idle (heartbeats only)."""
    failed = {}

    def fail(key, e):
        log(f"{key}: benchmark failed: {e!r}")
        failed[key] = str(e)
        results["meta"]["notes"].append(f"{key}: benchmark failed: {e}")
        results[key]["error"] = str(e)

    def step(name, fn):
        for key, c in clusters.items():
            if key in failed:
                continue
            log(f"--- {name}: {c.name} ---")
            load = os.getloadavg()[0]
            try:
                results[key][name] = fn(c)
            except Exception as e:  # noqa: BLE001 - keep the other side's numbers
                fail(key, e)
            results["meta"]["loadavg"].append([key, name, round(load, 2), round(os.getloadavg()[0], 2)])

    for key, _ in impls:
        results[key] = {}
    for size, stage in ((args.workers, 0), (4, 1)):
        clusters = {}
        for key, make in impls:
            if key in failed:
                continue
            c = make(size, stage)
            clusters[key] = c
            try:
                c.start()
            except Exception as e:  # noqa: BLE001
                fail(key, e)
        try:
            if stage == 0:
                step(f"spread_{size}", lambda c: spread(c, total=args.spread_requests, clients=args.spread_clients))
                step("hung", lambda c: failure_rounds(c, signal.SIGSTOP, args.hung_rounds, deadline_s=5.0))
                step("crash", lambda c: failure_rounds(c, signal.SIGKILL, args.crash_rounds, deadline_s=5.0))
                step("sighup", lambda c: sighup_under_load(c, reloads=args.reloads, clients=args.load_clients))
                step("final_status", lambda c: c.status())
            else:
                step("spread_4", lambda c: spread(c, total=args.spread_requests, clients=args.spread_clients))
        finally:
            for key, c in clusters.items():
                took = c.stop()
                if stage == 0:
                    results[key]["graceful_stop_s"] = took


def ms(v, nd=1):
    return "—" if v is None else f"{v:.{nd}f} ms"


def mark(ok):
    return " ✅" if ok else " ❌"


def derived(res):
    d = {}
    hung = [r["ms"] for r in res.get("hung", [])]
    d["hung_missing"] = sum(1 for v in hung if v is None)
    d["hung"] = summary([v for v in hung if v is not None])
    d["hung_probe_failures"] = sum(r["probes"]["failed"] for r in res.get("hung", []))
    d["hung_probes"] = sum(r["probes"]["sent"] for r in res.get("hung", []))
    d["hung_detect"] = summary([r["victim_gone_ms"] for r in res.get("hung", []) if r["victim_gone_ms"] is not None])
    crash = [r["ms"] for r in res.get("crash", [])]
    d["crash_missing"] = sum(1 for v in crash if v is None)
    d["crash"] = summary([v for v in crash if v is not None])
    d["crash_probe_failures"] = sum(r["probes"]["failed"] for r in res.get("crash", []))
    d["crash_probes"] = sum(r["probes"]["sent"] for r in res.get("crash", []))
    return d


def table(results):
    names = [k for k in ("gateway", "node") if k in results]
    D = {k: derived(results[k]) for k in names}
    R = results
    rows = []

    def row(metric, fn, target=""):
        cells = []
        for k in names:
            try:
                cells.append(fn(k))
            except (KeyError, TypeError, ValueError):
                cells.append("—")
        rows.append((metric, cells, target))

    def hung_cell(k):
        h, miss = D[k]["hung"], D[k]["hung_missing"]
        s = f"{ms(h['median'])} / {ms(h['max'])}"
        if miss:
            s += f" ({miss} of {h['n'] + miss} never replaced)"
        return s + mark(not miss and h["max"] is not None and h["max"] <= HUNG_BOUND_MS)

    def crash_cell(k):
        c, miss = D[k]["crash"], D[k]["crash_missing"]
        s = f"{ms(c['median'])} / {ms(c['p90'])} / {ms(c['max'])}"
        if miss:
            s += f" ({miss} never replaced)"
        return s + mark(not miss and c["max"] is not None and c["max"] <= CRASH_TARGET_MS)

    def spread_cell(key):
        def f(k):
            s = R[k][key]
            return f"{s['min_share'] * 100:.1f}% / {s['max_share'] * 100:.1f}% / CV {s['cv']:.3f}"
        return f

    row(f"Hung worker (SIGSTOP) → new pid serving, median / max ({len(R[names[0]].get('hung', []))} rounds)",
        hung_cell, f"≤ {HUNG_BOUND_MS} ms (workerTimeout + watchdogInterval + 100)")
    row("… of which: SIGSTOP → hung worker killed, median / max",
        lambda k: f"{ms(D[k]['hung_detect']['median'], 0)} / {ms(D[k]['hung_detect']['max'], 0)}", "")
    row("… /health probes failed during the hang rounds (1 probe/ms)",
        lambda k: f"{D[k]['hung_probe_failures']} of {D[k]['hung_probes']}", "")
    row(f"Killed worker (SIGKILL) → new pid serving, median / p90 / max ({len(R[names[0]].get('crash', []))} rounds)",
        crash_cell, f"≤ {CRASH_TARGET_MS:.0f} ms")
    row("… /health probes failed during the crash rounds",
        lambda k: f"{D[k]['crash_probe_failures']} of {D[k]['crash_probes']}", "")
    for n, key in ((2, "spread_2"), (4, "spread_4")):
        s0 = R[names[0]].get(key, {})
        row(f"Spread, {n} workers ({s0.get('requests', '?')} req, {s0.get('clients', '?')} clients): min / max share, CV",
            spread_cell(key), f"ideal {100 / n:.0f}% each, CV 0")
        row(f"… throughput, {n} workers (new connection per request)",
            lambda k, key=key: f"{R[k][key]['rps']:.0f} req/s", "")
    row("SIGHUP ×10 under load (8 clients): requests done",
        lambda k: f"{R[k]['sighup']['requests']}", "")
    row("… failed requests",
        lambda k: f"{R[k]['sighup']['failed']}" + (f" {R[k]['sighup']['errors']}" if R[k]['sighup']['failed'] else "")
        + mark(R[k]["sighup"]["failed"] == 0 and R[k]["sighup"]["reloads_incomplete"] == 0), "0")
    row("… refused / reset connections", lambda k: f"{R[k]['sighup']['refused_or_reset']}", "0")
    row("… latency p50 / p99 / max",
        lambda k: f"{ms(R[k]['sighup']['latency_ms']['p50'], 2)} / {ms(R[k]['sighup']['latency_ms']['p99'], 2)} / {ms(R[k]['sighup']['latency_ms']['max'], 1)}", "")
    row("… reload time (signal → all new workers ready, old gone), median / max",
        lambda k: f"{ms(R[k]['sighup']['reload_ms']['median'], 0)} / {ms(R[k]['sighup']['reload_ms']['max'], 0)}"
        + (f" ({R[k]['sighup']['reloads_incomplete']} incomplete)" if R[k]["sighup"]["reloads_incomplete"] else ""), "")
    row("… total time", lambda k: f"{R[k]['sighup']['total_s']:.1f} s", "")
    row("Graceful stop (SIGTERM → master exited)",
        lambda k: ms(R[k]["graceful_stop_s"] * 1000, 0) if R[k].get("graceful_stop_s") is not None else "killed", "")

    head = {"gateway": "activestack-gateway", "node": "node cluster"}
    out = ["| metric | " + " | ".join(head[k] for k in names) + " | target |",
           "|---|" + "---|" * len(names) + "---|"]
    for metric, cells, target in rows:
        out.append(f"| {metric} | " + " | ".join(cells) + f" | {target} |")
    return "\n".join(out)


def write_markdown(results, path):
    m = results["meta"]
    lines = [
        "# Supervisor benchmark: activestack-gateway vs Node cluster",
        "",
        f"Run {m['date']} on {m['machine']} ({m['cpus']} CPUs), {m['node_version']}, "
        f"gateway `{m['gateway_binary']}`. Parameters (both): "
        + ", ".join(f"{k}={v}" for k, v in PARAMS.items()) + ".",
        "Each request is `GET /health` on a new TCP connection to 127.0.0.1. "
        "Generated by `bench/run-supervisor.sh`; raw numbers in `supervisor.json`, plot in `supervisor.png`.",
        "",
        table(results),
        "",
        "✅/❌: meets / misses the target. Times are from the signal (sent by the benchmark) to the first "
        "`/health` answer from a pid never seen before; probes start every 1 ms on new connections.",
    ]
    if m.get("notes"):
        lines += ["", "Notes:"] + [f"- {n}" for n in m["notes"]]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        log("matplotlib not available: no plot (the table and JSON are written)")
        return False
    names = [k for k in ("gateway", "node") if k in results]
    label = {"gateway": "activestack-gateway", "node": "node cluster"}
    color = {"gateway": "#1f77b4", "node": "#2ca02c"}
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    fig.suptitle("Supervisor benchmark: activestack-gateway vs Node cluster "
                 f"({results['meta']['cpus']} CPUs, loopback, new connection per request)", fontsize=13)

    # (a) hung
    ax = axes[0][0]
    for k in names:
        vals = [r["ms"] for r in results[k].get("hung", [])]
        xs = [i + 1 for i, v in enumerate(vals) if v is not None]
        ax.plot(xs, [v for v in vals if v is not None], "o-", color=color[k], label=label[k])
        det = [r["victim_gone_ms"] for r in results[k].get("hung", [])]
        ax.plot([i + 1 for i, v in enumerate(det) if v is not None], [v for v in det if v is not None],
                "x:", color=color[k], alpha=0.6, label=f"{label[k]}: hung worker killed")
    ax.axhline(HUNG_BOUND_MS, color="red", ls="--", label=f"bound {HUNG_BOUND_MS} ms")
    ax.set_title("1. Hung worker (SIGSTOP) → new pid serving /health")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("ms after SIGSTOP")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    # (b) crash
    ax = axes[0][1]
    allv = []
    for k in names:
        vals = [r["ms"] for r in results[k].get("crash", [])]
        allv += [v for v in vals if v is not None]
        xs = [i + 1 for i, v in enumerate(vals) if v is not None]
        med = pctl([v for v in vals if v is not None], 50)
        ax.plot(xs, [v for v in vals if v is not None], "o-", color=color[k],
                label=f"{label[k]} (median {med:.1f} ms)" if med is not None else label[k])
    ax.axhline(CRASH_TARGET_MS, color="red", ls="--", label=f"target {CRASH_TARGET_MS:.0f} ms")
    if allv and max(allv) / max(min(allv), 0.1) > 20:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set_title("2. Killed worker (SIGKILL) → new pid serving /health")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("ms after SIGKILL")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")

    # (c) spread
    ax = axes[1][0]
    x = 0
    ticks, ticklabels = [], []
    for n, key in ((2, "spread_2"), (4, "spread_4")):
        for k in names:
            s = results[k].get(key)
            if not s:
                continue
            shares = s["shares"]
            xs = [x + i * 0.8 / len(shares) for i in range(len(shares))]
            ax.bar(xs, [v * 100 for v in shares], width=0.8 / len(shares) * 0.9, align="edge",
                   color=color[k], edgecolor="black", linewidth=0.5)
            ax.hlines(100 / n, x, x + 0.8, colors="red", linestyles="--")
            ticks.append(x + 0.4)
            ticklabels.append(f"{label[k]}\n{n} workers, CV {s['cv']:.2f}")
            x += 1
    ax.set_xticks(ticks)
    ax.set_xticklabels(ticklabels, fontsize=8)
    ax.set_ylabel("share of requests per worker (%)")
    ax.set_title("3. Connection spread (red dashes: even share)")
    ax.grid(alpha=0.3, axis="y")

    # (d) SIGHUP under load
    ax = axes[1][1]
    for k in names:
        s = results[k].get("sighup")
        if not s or not s["timeline"]:
            continue
        bin_s = 0.25
        bins = {}
        for t, l in s["timeline"]:
            bins.setdefault(int(t / bin_s), []).append(l)
        xs = sorted(bins)
        ax.plot([b * bin_s for b in xs], [pctl(bins[b], 99) for b in xs], "-", color=color[k],
                label=f"{label[k]}: p99 per {int(bin_s * 1000)} ms; {s['failed']} failed of {s['requests']}")
        ax.plot([b * bin_s for b in xs], [pctl(bins[b], 50) for b in xs], ":", color=color[k], alpha=0.7,
                label=f"{label[k]}: p50")
        for a, b in s["reload_marks_s"]:
            ax.axvspan(a, b, color=color[k], alpha=0.08)
        if s["failures_t"]:
            ft = [t for t, _ in s["failures_t"]]
            ax.plot(ft, [0.05] * len(ft), "x", color=color[k], ms=8, mew=2, label=f"{label[k]}: failed request")
    ax.set_yscale("log")
    ax.set_title("4. 10 × SIGHUP under load (shaded: reload in progress)")
    ax.set_xlabel("s since load start")
    ax.set_ylabel("request latency (ms)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")

    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=110)
    log(f"plot written to {path}")
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "activestack-gateway"))
    ap.add_argument("--node", default=shutil.which("node") or "node")
    ap.add_argument("--only", choices=["gateway", "node"], help="run one implementation only")
    ap.add_argument("--port", type=int, default=18080, help="gateway port (node uses port+100)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--hung-rounds", type=int, default=5)
    ap.add_argument("--crash-rounds", type=int, default=10)
    ap.add_argument("--reloads", type=int, default=10)
    ap.add_argument("--spread-requests", type=int, default=5000)
    ap.add_argument("--spread-clients", type=int, default=8)
    ap.add_argument("--load-clients", type=int, default=8)
    ap.add_argument("--gateway-prop", action="append", default=[], metavar="KEY=VALUE",
                    help="extra line for the gateway's .properties (repeatable), e.g. gateway.rabbitmq.port=5672")
    ap.add_argument("--seed", type=int, default=1, help="seed of the random signal phase in scenarios 1-2")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    RNG.seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="supervisor-bench-")
    node_version = subprocess.run([args.node, "--version"], capture_output=True, text=True).stdout.strip()
    results = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "node_version": f"node {node_version}",
            "gateway_binary": os.path.relpath(args.binary, ROOT),
            "params": PARAMS,
            "seed": args.seed,
            "gateway_props": args.gateway_prop,
            "hung_bound_ms": HUNG_BOUND_MS,
            "crash_target_ms": CRASH_TARGET_MS,
            "logs": tmp,
            "notes": [],
            "loadavg": [],  # [impl, scenario, 1-min load average before, after]
        }
    }
    impls = []
    if args.only in (None, "gateway"):
        if not os.access(args.binary, os.X_OK):
            sys.exit(f"{args.binary} not found: run `cargo build --release` first")
        impls.append(("gateway", lambda n, i: Gateway(args.binary, args.gateway_prop, args.port + i, n, tmp)))
    if args.only in (None, "node"):
        impls.append(("node", lambda n, i: NodeCluster(args.node, args.port + 100 + i, n, tmp)))
    t0 = now()
    run_all(impls, args, results)
    results["meta"]["seconds"] = now() - t0
    with open(os.path.join(args.out, "supervisor.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    write_markdown(results, os.path.join(args.out, "supervisor.md"))
    plot(results, os.path.join(args.out, "supervisor.png"))
    print(open(os.path.join(args.out, "supervisor.md")).read())
    log(f"done in {results['meta']['seconds']:.0f}s; logs of the runs under {tmp}")


if __name__ == "__main__":
    main()
