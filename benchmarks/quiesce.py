"""Wait for a server to finish the requests a stopped wrk run left in flight.

wrk stops on time, not when the server is done: with 64 connections of heavy requests a slow
server may still be working for seconds, and that work would be charged to the next run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from benchmarks.memory import process_tree

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads), 0 when it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # Fields after the parenthesised command name (which may contain spaces).
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds(root: int) -> float:
    return sum(cpu_seconds(pid) for pid in process_tree(root))


def wait_until_idle(
    root: int, busy_fraction: float = 0.1, window_s: float = 0.3, timeout_s: float = 60.0
) -> float:
    """Block until the tree uses under `busy_fraction` of a core over `window_s`; seconds waited."""
    start = time.monotonic()
    before = tree_cpu_seconds(root)
    while time.monotonic() - start < timeout_s:
        time.sleep(window_s)
        after = tree_cpu_seconds(root)
        if after - before < busy_fraction * window_s:
            break
        before = after
    return time.monotonic() - start
