"""CPU time of a cold one-shot, for checkouts side by side, against the orjson floor.

One command::

    python3 benchmarks/paired_cpu.py --tree before=/path/to/old/checkout --tree after=.

Wall-time ratios (``benchmarks/run.py``) move by ±0.15 with a busy neighbour,
because the floor itself is a short run that a stall can double.  CPU time is
steadier: this runs each checkout's one-shot (``--skip-validation``, a fresh
state dir, no config on disk) and the floor (``gc.disable();
orjson.loads(requests.get(url).content)``, as in run.py) in turn against one
Marathon emulator, round after round, and prints each one's user+system CPU
seconds (the process and the children it waited for, so the default
certificate's forked child counts) and its median over the floor's median.
Byte code is cached for all alike, after an untimed first round.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.children import APPS_PATH, child_env, emulator  # noqa: E402
from benchmarks.generate import dumps_state, generate_state  # noqa: E402
from benchmarks.run import FLOOR_ORJSON, router_command  # noqa: E402

FLOOR = "floor"


def cpu_seconds_of(command: list[str], env: dict[str, str], cwd: str) -> float:
    """User+system CPU of ``command`` run to its end (and of the children it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{command[:3]} exited {done.returncode}:\n"
                         f"{done.stderr.decode(errors='replace')[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(trees: dict[str, Path], apps: int, tasks: int, rounds: int,
            workdir: str) -> dict[str, list[float]]:
    """CPU seconds per round for every tree and the floor, in turn within each round."""
    state = os.path.join(workdir, "state.json")
    with open(state, "wb") as handle:
        handle.write(dumps_state(generate_state(apps, tasks, addresses="distinct")))
    spent: dict[str, list[float]] = {name: [] for name in [*trees, FLOOR]}
    # Byte code cached under workdir for every run alike (child_env), written by an
    # untimed first round: a checkout without .pyc files would compile its modules
    # on every run where PYTHONDONTWRITEBYTECODE is set.
    floor_env = child_env(workdir)
    with emulator(state, workdir, floor_env) as url:
        for round_ in range(rounds + 1):
            seconds = cpu_seconds_of([sys.executable, "-c", FLOOR_ORJSON, url + APPS_PATH],
                                     floor_env, workdir)
            if round_:
                spent[FLOOR].append(seconds)
            for name, tree in trees.items():
                state_dir = os.path.join(workdir, f"state-{name}")
                config = os.path.join(workdir, f"{name}.cfg")
                shutil.rmtree(state_dir, ignore_errors=True)
                if os.path.exists(config):
                    os.unlink(config)
                env = dict(floor_env, PYTHONPATH=str(tree))
                seconds = cpu_seconds_of(router_command(url, config, state_dir), env, workdir)
                if round_:
                    spent[name].append(seconds)
    return spent


def report(spent: dict[str, list[float]]) -> str:
    floor = statistics.median(spent[FLOOR])
    rows = [f"{'run':>8} {'median s':>9} {'min s':>7} {'/ floor':>8}  per round"]
    for name, seconds in spent.items():
        median = statistics.median(seconds)
        rows.append(f"{name:>8} {median:>9.3f} {min(seconds):>7.3f} {median / floor:>8.2f}  "
                    + " ".join(f"{s:.2f}" for s in seconds))
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                        help="a checkout to run (repeat; default: this one, as 'this')")
    parser.add_argument("--apps", type=int, default=5000, help="apps (default 5000)")
    parser.add_argument("--tasks", type=int, default=10, help="tasks per app (default 10)")
    parser.add_argument("--rounds", type=int, default=8, help="rounds (default 8)")
    args = parser.parse_args(argv)
    trees: dict[str, Path] = {}
    for given in args.tree or [f"this={Path(__file__).resolve().parent.parent}"]:
        name, _, path = given.partition("=")
        if not path or name == FLOOR or not (Path(path) / "servicerouter").is_dir():
            parser.error(f"--tree {given}: NAME=PATH of a servicerouter checkout")
        trees[name] = Path(path).resolve()
    with tempfile.TemporaryDirectory(prefix="sr-paired-cpu-") as workdir:
        spent = measure(trees, args.apps, args.tasks, args.rounds, workdir)
    print(f"{args.apps} apps x {args.tasks} tasks, distinct addresses, {args.rounds} rounds; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(report(spent))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
