"""Resident memory of a server's process tree, sampled from /proc while it is under load."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")


def children(pid: int) -> list[int]:
    kids: list[int] = []
    task_dir = PROC / str(pid) / "task"
    try:
        tasks = list(task_dir.iterdir())
    except OSError:
        return kids
    for task in tasks:
        try:
            kids.extend(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return kids


def process_tree(root: int) -> list[int]:
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children(pid))
    return tree


def rss_bytes(pid: int) -> int | None:
    """VmRSS of one process, or None when it has gone (or is a zombie without memory)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def command_name(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


@dataclass
class MemoryPeak:
    """Largest RSS seen per process and for the whole tree."""

    per_process: dict[int, int] = field(default_factory=dict)
    tree_total: int = 0
    samples: int = 0

    def add(self, sample: dict[int, int]) -> None:
        self.samples += 1
        self.tree_total = max(self.tree_total, sum(sample.values()))
        for pid, rss in sample.items():
            self.per_process[pid] = max(self.per_process.get(pid, 0), rss)

    def merge(self, other: MemoryPeak) -> None:
        self.samples += other.samples
        self.tree_total = max(self.tree_total, other.tree_total)
        for pid, rss in other.per_process.items():
            self.per_process[pid] = max(self.per_process.get(pid, 0), rss)

    @property
    def max_process(self) -> int:
        """The largest single process: with uvicorn workers, the heaviest worker."""
        return max(self.per_process.values(), default=0)

    def to_dict(self) -> dict:
        return {
            "max_process_mb": round(self.max_process / 2**20, 1),
            "tree_total_mb": round(self.tree_total / 2**20, 1),
            "processes": len(self.per_process),
            "samples": self.samples,
        }


def sample_tree(root: int) -> dict[int, int]:
    sample = {}
    for pid in process_tree(root):
        rss = rss_bytes(pid)
        if rss:
            sample[pid] = rss
    return sample


class MemorySampler:
    """Context manager: samples the tree under `root` every `interval_s` until it exits."""

    def __init__(self, root: int, interval_s: float = 0.25) -> None:
        self.root = root
        self.interval_s = interval_s
        self.peak = MemoryPeak()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self.peak.add(sample_tree(self.root))
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
