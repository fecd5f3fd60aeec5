"""One PNG per mode: req/s and p99 per scenario and concurrency, each server side by side."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt

from benchmarks.report import table_rows

COLOURS = {"ours": "#1f77b4", "ours-nobatch": "#7fb3de", "naive": "#d62728"}


def plot(report: dict, path: Path) -> Path:
    rows = [r for r in table_rows(report) if r.result is not None]
    groups = list(dict.fromkeys(f"{r.scenario.name}\nc{r.concurrency}" for r in rows))
    variants = list(dict.fromkeys(r.variant for r in rows))
    values = {(f"{r.scenario.name}\nc{r.concurrency}", r.variant): r.result for r in rows}
    width = 0.8 / max(1, len(variants))
    fig, (ax_rate, ax_p99) = plt.subplots(2, 1, figsize=(max(10, len(groups) * 0.7), 9))
    for i, variant in enumerate(variants):
        xs, rates, p99s = [], [], []
        for j, group in enumerate(groups):
            result = values.get((group, variant))
            if result:
                xs.append(j + (i - (len(variants) - 1) / 2) * width)
                rates.append(result["req_per_s"])
                p99s.append(result["p99_ms"])
        colour = COLOURS.get(variant)
        ax_rate.bar(xs, rates, width, label=variant, color=colour)
        ax_p99.bar(xs, p99s, width, label=variant, color=colour)
    for c in report["settings"]["concurrency"]:
        ceiling = report.get("http_ceiling", {}).get(str(c))
        if ceiling:
            ax_rate.axhline(ceiling["req_per_s"], color="grey", linestyle=":", linewidth=1)
    labels = ((ax_rate, "requests/s (log; dotted: HTTP ceilings)"), (ax_p99, "p99 ms (log)"))
    for ax, label in labels:
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.set_xticks(range(len(groups)), groups, fontsize=7)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    machine = report["machine"]
    fig.suptitle(
        f"VAE service benchmark, {report['mode']} mode: {machine['cores']} cores, "
        f"commit {machine['git_commit']}, {machine['date']}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
