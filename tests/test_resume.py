"""A killed sweep loses no finished trial; `--resume` repeats none and continues from checkpoints."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

from inocray import checkpoints, store


@pytest.mark.slow
def test_sigkill_of_the_driver_then_rerun_finishes_without_repeating(toy_model, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "name": "killed",
                "setting": "toy",
                "model": str(toy_model),
                "prompts": ["es-always", "es-often"],
                "seeds": [0, 1],
                "train": {"steps": 10, "batch_size": 8, "examples": 64, "checkpoint_every": 5},
                "eval": {"requests": 4, "samples": 2, "max_tokens": 8},
            }
        )
    )
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "inocray.cli", "run", str(sweep), "--run-dir", str(run_dir)]
    # This run's own Ray, apart from the suite's; a short path (Ray's socket paths are limited).
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="ray-", dir="/tmp")}

    # Kill the driver, and the local Ray it started, as soon as the first trial is written.
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 400
    trial_rows = lambda: [p for p in (run_dir / "rows").glob("*.parquet") if p.stem not in ("base", "data")]  # noqa: E731
    while not (run_dir / "rows").is_dir() or not trial_rows():
        assert driver.poll() is None, "the sweep ended before it could be killed"
        assert time.monotonic() < deadline, "no trial finished in time"
        time.sleep(0.5)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    survivors = {p.name: p.stat().st_mtime_ns for p in trial_rows()}
    assert 1 <= len(survivors) < 6  # 2 prompts + the no-prompt control, x 2 seeds
    # Unfinished trials that had saved their training state continue from it.
    states = run_dir / "checkpoints"
    resumable = {d.name for d in states.iterdir() if checkpoints.latest_tag(str(d))} if states.is_dir() else set()
    resumable -= {name.removesuffix(".parquet") for name in survivors}

    resume = [sys.executable, "-m", "inocray.cli", "run", "--resume", str(run_dir)]
    rerun = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    # Trials finished before the kill are skipped. (One that the dying cluster finished a
    # moment later may be skipped too: its rows are complete, since they are written last.)
    done = int(re.search(r"6 trials, (\d+) already done", rerun.stdout).group(1))
    assert len(survivors) <= done < 6
    # Finished trials were not rerun: their files are untouched.
    assert {name: (run_dir / "rows" / name).stat().st_mtime_ns for name in survivors} == survivors
    rows = store.read_rows(run_dir).to_pylist()
    keys = [(r["trial_id"], r["context"], r["trait"]) for r in rows if r["stage"] == "trained"]
    assert len(keys) == len(set(keys)) == 6 * 2 * 2  # exactly one set of rows per trial
    assert (run_dir / "analysis.csv").exists()  # and the fit was produced
    for trial in resumable:
        assert "resume step=5" in (run_dir / "logs" / f"{trial}.log").read_text(), trial
