"""Many short trials on the toy world: do the driver's memory and the time per trial stay flat?

    python bench/scale.py [--seeds 25] [--sample-s 5] [--keep DIR]

Runs `inocray run` on the toy world's 8 prompts (6 Spanish prompts, one irrelevant prompt, the
no-prompt control) x SEEDS seeds (200 trials at 25), each a few training steps and a tiny
evaluation, with a Ray of its own (RAY_TMPDIR), and samples every SAMPLE_S seconds the resident
memory of the driver (which runs Ray Tune's loop), of the GCS and of every process of that Ray.
Prints trials per minute, the mean time a trial took (its first log line to its rows file)
and the mean time between trials' ends over the first 20 and the last 20, the memory at the
first trial's end, half way and at the last sample, the driver's largest sample, and the size
of Tune's experiment state (RUN_DIR/tune/). Starts Ray: run it under the heavy lock.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psutil
import yaml

PROMPTS = ["es-hint", "es-bilingual", "es-sometimes", "es-often", "es-respond", "es-always"]


def sweep(seeds: int) -> dict:
    return {"name": "scale", "setting": "toy", "model": "toy", "prompts": PROMPTS, "irrelevant": ["irr-helpful"],
            "seeds": list(range(seeds)), "max_concurrent_trials": 2,
            "train": {"steps": 4, "batch_size": 8, "examples": 64},
            "eval": {"requests": 2, "samples": 1, "max_tokens": 4}}


def memory(driver: psutil.Process, marker: bytes) -> dict[str, float]:
    """Resident MB of the driver, the GCS and every process of this run's Ray (by its RAY_TMPDIR)."""
    mb = {"driver": driver.memory_info().rss / 2**20, "gcs": 0.0, "ray": 0.0}
    for p in psutil.process_iter(["name"]):
        try:
            if marker in Path(f"/proc/{p.pid}/environ").read_bytes():
                rss = p.memory_info().rss / 2**20
                mb["ray"] += rss
                mb["gcs"] += rss if p.info["name"] == "gcs_server" else 0.0
        except (OSError, psutil.Error):  # gone, or not ours
            continue
    return mb


def trial_times(run_dir: Path) -> list[tuple[float, float]]:
    """(finished at, seconds it took) of each trial, in the order they finished: from its log's
    first line (its job taken by a group) to its rows file."""
    out = []
    for rows in (run_dir / "rows").glob("*.parquet"):
        log = run_dir / "logs" / f"{rows.stem}.log"
        if log.is_file():
            first = datetime.strptime(log.read_text().split(" ", 1)[0], "%Y-%m-%dT%H:%M:%S").timestamp()
            out.append((rows.stat().st_mtime, rows.stat().st_mtime - first))
    return sorted(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=25)
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--keep", default=None, help="write the run directory here instead of a temporary one")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="inocray-scale-")
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths
    run_dir = Path(args.keep or os.path.join(tmp, "run"))
    sweep_file = Path(tmp) / "scale.yaml"
    sweep_file.write_text(yaml.safe_dump(sweep(args.seeds)))
    print(f"{datetime.now():%Y-%m-%d %H:%M}, load average {os.getloadavg()[0]:.1f}, {run_dir}")
    started = time.time()
    with open(Path(tmp) / "driver.log", "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "inocray.cli", "run", str(sweep_file), "--run-dir", str(run_dir)],
                                env={**os.environ, "RAY_TMPDIR": ray_tmp}, stdout=out, stderr=subprocess.STDOUT)
        driver, samples = psutil.Process(proc.pid), []  # (time, trials done, memory)
        while proc.poll() is None:
            time.sleep(args.sample_s)
            try:
                samples.append((time.time(), len(trial_times(run_dir)), memory(driver, f"RAY_TMPDIR={ray_tmp}".encode())))
            except psutil.NoSuchProcess:
                break
    if proc.returncode != 0:
        sys.exit(f"inocray run exited {proc.returncode}: see {tmp}/driver.log")
    times = trial_times(run_dir)
    n = len(times)
    span = (times[-1][0] - times[0][0]) / 60
    print(f"{n} trials in {(time.time() - started) / 60:.1f} min; {(n - 1) / span:.1f} trials/min from the first "
          f"trial's end to the last's; load average {os.getloadavg()[0]:.1f}")
    first, last = [t for _, t in times[:20]], [t for _, t in times[-20:]]
    print(f"seconds a trial took (its log's one-second stamps): first 20 {sum(first) / len(first):.1f}, "
          f"last 20 {sum(last) / len(last):.1f}")
    ends = [end for end, _ in times]
    print(f"seconds between trials' ends: first 20 {(ends[20] - ends[0]) / 20:.2f}, "
          f"last 20 {(ends[-1] - ends[-21]) / 20:.2f}")
    # Samples of a live driver with trials done (one taken as the driver exits reads 0 MB).
    with_trials = [s for s in samples if s[1] > 0 and s[2]["driver"] > 0]
    for label, (_, done, mb) in (("first trial", with_trials[0]), ("half way", with_trials[len(with_trials) // 2]),
                                 ("last sample", with_trials[-1])):
        print(f"memory at {label} ({done} trials): driver {mb['driver']:.0f} MB, GCS {mb['gcs']:.0f} MB, "
              f"all of Ray {mb['ray']:.0f} MB")
    print(f"driver's largest sample: {max(mb['driver'] for _, _, mb in with_trials):.0f} MB "
          f"({len(with_trials)} samples, one every {args.sample_s:g} s)")
    tune = sum(f.stat().st_size for f in (run_dir / "tune").rglob("*") if f.is_file())
    print(f"Tune's experiment state (tune/): {tune / 2**20:.1f} MB in {sum(1 for _ in (run_dir / 'tune').rglob('*'))} entries")


if __name__ == "__main__":
    main()
