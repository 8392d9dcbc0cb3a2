"""Wall time of the README's run command: toy sweep with a cold base-model cache, then warm.

    python bench/toy_sweep.py [--sweep sweeps/toy.yaml] [--against TREE]

Runs `inocray run` twice in fresh run directories: first with an empty model cache (the
base model is built), then with the cache it filled. Prints both wall times and the
headline lines of each run. Takes 10-25 minutes on 2 cores.

`--against TREE` (another checkout of inocray, e.g. a git worktree of an older commit) runs
instead the warm sweep with the model cache as it is, once with TREE's inocray and then with
this one's, back to back, and prints both wall times and their ratio; and for this tree each
long-lived worker's peak memory (from the trial logs' end lines) after its first and its last
trial, and how many raylet "PYTHON worker processes have been started" warnings each run printed.

`--peak-memory RUN_DIR` prints those peak-memory figures for a finished run directory.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARNING = "PYTHON worker processes have been started"


def timed_run(sweep: str, run_dir: str, env: dict, cwd: str | None = None) -> tuple[float, list[str], str]:
    """`inocray run` in `cwd`: Ray puts the driver's working directory on its workers' sys.path
    before PYTHONPATH, so a tree's run must start in that tree."""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "inocray.cli", "run", str(Path(sweep).resolve()), "--run-dir", run_dir],
        env=env, text=True, capture_output=True, cwd=cwd,
    )
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"inocray run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    headline = [line for line in proc.stdout.splitlines()
                if "neutral context after training" in line or line.startswith("trials finished")]
    return wall, headline, proc.stdout + proc.stderr


def peak_memory(run_dir: Path) -> dict[str, list[tuple[str, float]]]:
    """Each worker process (pid) -> its trials' peak RSS in MB, in the order they ended."""
    by_pid = defaultdict(list)
    for log in run_dir.glob("logs/*.log"):
        text = log.read_text()
        pids = re.findall(r" (?:start|resume) step=\d+ total=\d+ pid=(\d+)", text)
        ends = re.findall(r"^(\S+) \S+ end step=\d+ loss=\S+ peak_rss_mb=(\d+)", text, re.M)
        if pids and ends:
            by_pid[pids[-1]].append((ends[-1][0], log.stem, float(ends[-1][1])))
    return {pid: [(trial, mb) for _, trial, mb in sorted(runs)] for pid, runs in by_pid.items()}


def against(sweep: str, tree: str, tmp: str) -> None:
    walls = {}
    for label, root in (("old", tree), ("new", str(ROOT))):
        env = {**os.environ, "PYTHONPATH": root}
        run_dir = os.path.join(tmp, label)
        load = os.getloadavg()
        walls[label], headline, output = timed_run(sweep, run_dir, env, cwd=root)
        pids = {pid for log in Path(run_dir).glob("logs/*.log")
                for pid in re.findall(r" (?:start|resume) step=\d+ total=\d+ pid=(\d+)", log.read_text())}
        print(f"{label} ({root}): {walls[label]:.0f} s, load average before {load[0]:.1f}, after "
              f"{os.getloadavg()[0]:.1f}; {len(pids)} training worker processes; "
              f"raylet worker-start warnings: {output.count(WARNING)}")
        for line in headline:
            print("   ", line)
    print(f"new / old: {walls['new'] / walls['old']:.2f}")
    print_peaks(Path(tmp) / "new")


def print_peaks(run_dir: Path) -> None:
    for pid, trials in peak_memory(run_dir).items():
        first, last = trials[0][1], trials[-1][1]
        print(f"worker pid {pid}: {len(trials)} trials, peak RSS {first:.0f} MB after the first, "
              f"{last:.0f} MB after the last ({100 * (last / first - 1):+.1f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="sweeps/toy.yaml")
    parser.add_argument("--against", default=None, help="another inocray checkout to compare with (warm cache)")
    parser.add_argument("--peak-memory", default=None, help="print each worker's peak memory in this run directory")
    args = parser.parse_args()
    if args.peak_memory:
        return print_peaks(Path(args.peak_memory))
    with tempfile.TemporaryDirectory(prefix="inocray-bench-") as tmp:
        if args.against:
            return against(args.sweep, args.against, tmp)
        env = {**os.environ, "INOCRAY_CACHE": os.path.join(tmp, "cache")}
        for label in ("cold cache (base model built)", "warm cache (base model reused)"):
            wall, headline, _ = timed_run(args.sweep, os.path.join(tmp, label.split()[0]), env)
            print(f"{label}: {wall / 60:.1f} min")
            for line in headline:
                print("   ", line)


if __name__ == "__main__":
    main()
