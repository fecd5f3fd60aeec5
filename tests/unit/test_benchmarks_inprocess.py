"""The in-process driver runs every case against the real app and reports a cost for each."""

from __future__ import annotations

import gc
import re

import pytest

from benchmarks.inprocess import CASES, main


def test_every_case_answers_200_and_gets_a_cost(tiny_model_dir, capsys):
    threshold = gc.get_threshold()
    try:
        args = ["--model-dir", str(tiny_model_dir), "--concurrency", "4", "--rounds", "3"]
        assert main(args) == 0
    finally:
        gc.set_threshold(*threshold)  # the driver tunes the GC as a worker does
    lines = capsys.readouterr().out.splitlines()
    costs = dict(
        re.fullmatch(r"(\S+) +([\d.]+) us CPU per request", line).groups() for line in lines
    )
    assert set(costs) == set(CASES)
    assert all(float(cost) > 0 for cost in costs.values())


def test_unknown_cases_are_refused(tiny_model_dir):
    with pytest.raises(SystemExit) as exc:
        main(["--model-dir", str(tiny_model_dir), "--cases", "healthz,nope"])
    assert exc.value.code == 2
