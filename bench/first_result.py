"""Where a small sweep's first result goes: the phases of the first finished trial.

    python bench/first_result.py [--prompts 3] [--keep DIR]

Runs `inocray run` on the toy sweep (sweeps/toy.yaml) cut to PROMPTS prompts and seed 0, with
its two controls (5 trials at 3), with a Ray of its own (RAY_TMPDIR), and notes when each line
of the driver's output came. The trials' start is the first progress line's time less the
elapsed time it prints (Tune's loop, from the Progress callback's creation). From the first
finished trial's log (logs/TRIAL.log, one-second stamps) and its rows file it prints, from the
trials' start: its job taken by a training group (the group's start: Ray Train's controller,
worker actors and process group, the worker's imports, the base model; with the steps of
each group's start from Ray Train's controller log), training begun (`start step=0`: the
model copy, LoRA, DeepSpeed's engine), training ended, the evaluation's time, rows written,
and the progress line. Starts Ray: run it under the heavy lock.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MARKS = (("taken by the training group", "job taken by a group"), (" start step=0 ", "training begun"),
         (" end step=", "training ended"))
# Ray Train's controller log (RAY_TMPDIR/ray/session_latest/logs/train/ray-train-sys-controller-*.log,
# JSON lines): the steps of a slot's group start.
GROUP_STEPS = (("Requesting resources", "controller up, resources asked"),
               ("worker actors created", "worker actor created"),
               ("Train context initialized", "process group formed"),
               ("Worker group startup completed", "worker function launched"))


def stamp(line: str) -> float:
    return datetime.strptime(line.split(" ", 1)[0], "%Y-%m-%dT%H:%M:%S").timestamp()


def group_starts(ray_tmp: str) -> list[dict[str, float]]:
    """For each slot's group: when (seconds since the epoch) its controller logged each of GROUP_STEPS."""
    out = []
    for path in sorted(Path(ray_tmp, "ray", "session_latest", "logs", "train").glob("ray-train-sys-controller-*.log")):
        seen: dict[str, float] = {}
        for line in path.read_text().splitlines():
            record = json.loads(line)
            for marker, label in GROUP_STEPS:
                if marker in record.get("message", "") and label not in seen:
                    at = datetime.strptime(record["asctime"], "%Y-%m-%d %H:%M:%S,%f")
                    seen[label] = at.timestamp()
        out.append(seen)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--keep", default=None, help="write the run directory here instead of a temporary one")
    args = parser.parse_args()
    doc = yaml.safe_load((ROOT / "sweeps" / "toy.yaml").read_text())
    doc |= {"prompts": doc["prompts"][-args.prompts:], "seeds": [0]}
    tmp = tempfile.mkdtemp(prefix="inocray-first-")
    run_dir = Path(args.keep or os.path.join(tmp, "run"))
    sweep_file = Path(tmp) / "first.yaml"
    sweep_file.write_text(yaml.safe_dump(doc))
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths
    print(f"{datetime.now():%Y-%m-%d %H:%M}, load average {os.getloadavg()[0]:.1f}, {run_dir}")
    started = time.time()
    lines: list[tuple[float, str]] = []  # (seconds since the command's start, line)
    proc = subprocess.Popen([sys.executable, "-m", "inocray.cli", "run", str(sweep_file), "--run-dir", str(run_dir)],
                            env={**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        lines.append((time.time() - started, line.rstrip()))
    if proc.wait() != 0:
        sys.exit("inocray run exited {}:\n{}".format(proc.returncode, "\n".join(text for _, text in lines[-30:])))
    progress = [(t, text) for t, text in lines if re.match(r"\[\s*\d+/", text)]
    first_at, first = progress[0]
    m, s = re.search(r"elapsed (\d+):(\d\d)", first).groups()
    trials_start = first_at - (int(m) * 60 + int(s))  # seconds since the command's start
    trial = first.split("]", 1)[1].split()[0]
    for at, text in lines:
        if at <= trials_start + 1 or text.startswith("["):
            print(f"{at:6.1f} s  {text[:110]}")
    print(f"\ntrials' start: {trials_start:.1f} s after the command's; the first finished trial, {trial}, "
          "from the trials' start:")
    zero = started + trials_start  # the trials' start, in seconds since the epoch
    for slot, steps in enumerate(group_starts(ray_tmp)):
        print(f"  group {slot}: " + ", ".join(f"{label} {at - zero:.1f} s" for label, at in steps.items()))
    log = (run_dir / "logs" / f"{trial}.log").read_text().splitlines()
    for marker, label in MARKS:
        found = [stamp(line) for line in log if marker in line]
        if found:
            print(f"  {label:<22} {found[0] - zero:5.0f} s")
    evaluated = [line for line in log if line.startswith("evaluated step ")]
    if evaluated:
        print(f"  {'evaluation took':<22} {float(evaluated[-1].split(' in ', 1)[1].split()[0]):5.1f} s")
    rows = (run_dir / "rows" / f"{trial}.parquet").stat().st_mtime
    print(f"  {'rows written':<22} {rows - zero:5.1f} s")
    print(f"  {'its progress line':<22} {first_at - trials_start:5.1f} s")
    for at, text in progress[1:]:
        print(f"  next: {text.split(']', 1)[1].split()[0]:<16} {at - trials_start:5.1f} s")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
