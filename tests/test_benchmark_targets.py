"""benchmarks/run.py judges the cold one-shot by CPU time as well as wall time.

On a shared machine wall-time ratios swing with other load (1.4x to 2.1x for
the same code in one afternoon); the CPU time of each child (user + sys, from
wait4) moves far less, so the verdicts name both.
"""

from __future__ import annotations

from benchmarks.children import Run
from benchmarks.run import SizeResult, _targets


def _run(wall: float, cpu: float) -> Run:
    return Run(wall=wall, cpu=cpu, rss_kb=1000, returncode=0, stderr="")


def test_the_cold_verdicts_name_wall_and_cpu_ratios() -> None:
    result = SizeResult(5000, 10, "distinct")
    result.floor_orjson = [_run(1.0, 0.5), _run(1.0, 0.5)]
    result.router = [_run(1.5, 1.2), _run(1.5, 1.2)]  # wall 1.5x, CPU 2.4x
    result.unchanged = [_run(0.4, 0.3), _run(0.4, 0.3)]
    lines = _targets([result])
    assert ("target: cold time / floor orjson at 5000 apps, distinct addresses = 1.50 "
            "(<= 2: met)") in lines
    assert ("target: cold CPU time / floor orjson CPU at 5000 apps, distinct addresses = "
            "2.40 (<= 2: MISSED)") in lines
