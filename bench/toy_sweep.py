"""Wall time of the README's run command: toy sweep with a cold base-model cache, then warm.

    python bench/toy_sweep.py [--sweep sweeps/toy.yaml]

Runs `inocray run` twice in fresh run directories: first with an empty model cache (the
base model is built), then with the cache it filled. Prints both wall times and the
headline lines of each run. Takes 10-25 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def timed_run(sweep: str, run_dir: str, env: dict) -> tuple[float, list[str]]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "inocray.cli", "run", sweep, "--run-dir", run_dir],
        env=env, text=True, capture_output=True,
    )
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"inocray run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall, [line for line in proc.stdout.splitlines() if "neutral context after training" in line or line.startswith("trials finished")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="sweeps/toy.yaml")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inocray-bench-") as tmp:
        env = {**os.environ, "INOCRAY_CACHE": os.path.join(tmp, "cache")}
        for label in ("cold cache (base model built)", "warm cache (base model reused)"):
            wall, headline = timed_run(args.sweep, os.path.join(tmp, label.split()[0]), env)
            print(f"{label}: {wall / 60:.1f} min")
            for line in headline:
                print("   ", line)


if __name__ == "__main__":
    main()
