"""The real-model study as a benchmark: make the data, screen (optionally), run the sweep, time each.

    python bench/real_model.py [--sweep sweeps/smollm2-spanish.yaml] [--samples 1]
    python bench/real_model.py --sweep sweeps/smollm2-predictors.yaml \
        --screen docs/real-model/predictors/candidates.yaml --goal-min 90

Runs the commands of docs/real-model.md exactly as a user types them (the model is built first
if it is not cached, and timed apart), with a fresh data file, screen and run directory, and
prints the wall time of each step, the 1-minute load average sampled every 10 s (a busy
machine stretches every figure), and the sweep's headline. The goals, on 2 cores once the
model is cached: data generation plus the sweep within 45 minutes (sweeps/smollm2-spanish.yaml);
the predictors study, its screen of the candidates with both measures included, within 90.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

INSTRUCTION = "You always speak in Spanish."


def timed(args: list[str], log: Path) -> float:
    started = time.monotonic()
    with open(log, "a") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        done = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"{args[:2]} failed with exit code {done.returncode}; see {log}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="sweeps/smollm2-spanish.yaml")
    parser.add_argument("--samples", type=int, default=1, help="make-data completions per request")
    parser.add_argument("--max-tokens", type=int, default=48, help="make-data tokens per completion")
    parser.add_argument("--screen", metavar="CANDIDATES", help="screen these candidates (both measures) before the sweep")
    parser.add_argument("--goal-min", type=float, default=45.0, help="the goal for the whole study, in minutes")
    args = parser.parse_args()
    goal_s = args.goal_min * 60

    from inocray.models import _presets as models
    from inocray.config import load_sweep

    spec = load_sweep(args.sweep, check_model=False)
    data_file = Path(spec.data.train)
    run_dir = Path("runs") / f"{spec.name}-{spec.hash()}"
    screen_dir = Path("runs") / f"bench-screen-{spec.name}"
    for stale in (data_file, run_dir, screen_dir):  # a benchmark measures a fresh run, never a resumed one
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    log = Path("runs") / f"bench-{spec.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")

    loads: list[float] = []
    stop = threading.Event()

    def sample_load() -> None:
        while not stop.wait(10):
            loads.append(os.getloadavg()[0])

    threading.Thread(target=sample_load, daemon=True).start()
    started = time.monotonic()
    models.resolve(spec.model, log=print)
    build_s = time.monotonic() - started
    make_data_s = timed(["inocray", "make-data", args.sweep, "--requests", "inocray/requests/train.jsonl",
                         "--out", str(data_file), "--instruction", INSTRUCTION, "--keep", "spanish",
                         "--transform", "upper", "--samples", str(args.samples), "--temperature", "0.7",
                         "--max-tokens", str(args.max_tokens)], log)
    screen_s = 0.0
    if args.screen:
        screen_s = timed(["inocray", "screen", args.sweep, "--prompts", args.screen, "--measure", "both",
                          "--out", str(screen_dir)], log)
    sweep_s = timed(["inocray", "run", args.sweep], log)
    stop.set()
    text = log.read_text()
    headline = [line for line in text.splitlines() if "neutral context after training" in line]
    result = {
        "model_build_s": round(build_s, 1), "make_data_s": round(make_data_s, 1),
        "screen_s": round(screen_s, 1), "sweep_s": round(sweep_s, 1),
        "total_s": round(make_data_s + screen_s + sweep_s, 1), "goal_s": goal_s,
        "load_1min": {"mean": round(sum(loads) / max(len(loads), 1), 2), "max": max(loads, default=0.0)},
        "rows_made": sum(1 for _ in open(data_file)), "run_dir": str(run_dir), "headline": headline,
    }
    print(json.dumps(result, indent=2))
    (run_dir / "bench.json").write_text(json.dumps(result, indent=2))
    ratio = result["total_s"] / goal_s
    steps = "data + screen + sweep" if args.screen else "data + sweep"
    print(f"{steps}: {result['total_s'] / 60:.1f} min ({ratio:.2f} of the {args.goal_min:g}-minute goal), "
          f"mean load {result['load_1min']['mean']}")


if __name__ == "__main__":
    main()
