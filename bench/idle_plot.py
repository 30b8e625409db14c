"""Plots bench/results/idle.json: KiB of worker RSS per idle client and the connect rate per
client count, each side (ours with socket.io v4 and 0.9 clients, the Node reference) one line."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    source, target = sys.argv[1:3]
    with open(source) as f:
        rows = [r for r in json.load(f)["rows"] if not r.get("failed")]
    fig, (memory, rate) = plt.subplots(1, 2, figsize=(11, 4))
    for side in sorted({r["side"] for r in rows}):
        mine = sorted((r for r in rows if r["side"] == side), key=lambda r: r["clients"])
        xs = [r["clients"] for r in mine]
        memory.plot(xs, [r["bytesPerClient"] / 1024 for r in mine], marker="o", label=side)
        rate.plot(xs, [r["clientsPerSec"] for r in mine], marker="o", label=side)
    memory.axhline(12, color="grey", linestyle="--", linewidth=1, label="target 12 KiB")
    for ax in (memory, rate):
        ax.set_xscale("log")
        ax.set_xlabel("idle clients on one worker")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
    memory.set_ylabel("worker RSS per client (KiB)")
    memory.set_title("memory per idle connection (lower is better)")
    rate.set_ylabel("clients / s (socket open -> gatewayConnectAck)")
    rate.set_title("connect rate (higher is better)")
    fig.tight_layout()
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main()
