"""Plots bench/results/realtime.json: latency p50/p99 per (clients, events/s), memory per client."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    source, target = sys.argv[1:3]
    with open(source) as f:
        results = json.load(f)
    rows = results["rows"]
    labels = [f"{r['clients']} clients\n{r['rate']}/s" for r in rows]
    fig, (lat, mem) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    xs = range(len(rows))
    lat.bar([x - 0.2 for x in xs], [r["p50_ms"] for r in rows], width=0.4, label="p50")
    lat.bar([x + 0.2 for x in xs], [r["p99_ms"] for r in rows], width=0.4, label="p99")
    lat.set_xticks(list(xs), labels)
    lat.set_ylabel("publish -> client latency (ms)")
    lat.set_yscale("log")
    lat.legend()
    lat.set_title("latency (JetStream -> worker -> Redis -> client)")
    memory = results["memory"]
    mem.bar([str(m["clients"]) for m in memory], [m["bytes_per_client"] / 1000 for m in memory])
    mem.set_xlabel("connected clients")
    mem.set_ylabel("worker RSS per client (KB)")
    mem.set_title("memory per realtime client")
    fig.suptitle(f"activestack-gateway realtime, load {results.get('loadavg', '')}")
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    print(f"wrote {target}")


main()
