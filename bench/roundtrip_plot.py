"""Plots bench/results/roundtrip.json: CPU per round trip and round trips/s per client count,
each side of the comparison (the `side` of every row) as one line."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    source, target = sys.argv[1:3]
    with open(source) as f:
        rows = [r for r in json.load(f)["rows"] if not r.get("failed")]
    sides = sorted({r["side"] for r in rows})
    fig, (cpu, rate) = plt.subplots(1, 2, figsize=(11, 4))
    for side in sides:
        mine = sorted((r for r in rows if r["side"] == side), key=lambda r: r["clients"])
        xs = [r["clients"] for r in mine]
        cpu.plot(xs, [r["cpuUsPerRt"] for r in mine], marker="o", label=side)
        rate.plot(xs, [r["rtPerSec"] for r in mine], marker="o", label=side)
    for ax in (cpu, rate):
        ax.set_xscale("log")
        ax.set_xlabel("clients (one request in flight each)")
        ax.grid(True, alpha=0.3)
        ax.legend()
    cpu.set_ylabel("gateway CPU per round trip (µs, all processes)")
    cpu.set_ylim(bottom=0)
    cpu.set_title("CPU per round trip (lower is better)")
    rate.set_ylabel("round trips / s")
    rate.set_ylim(bottom=0)
    rate.set_title("throughput (2 cores shared with load, agent, RabbitMQ)")
    fig.tight_layout()
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main()
