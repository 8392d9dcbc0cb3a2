"""A killed sweep loses no finished trial; `--resume` repeats none and continues from checkpoints.

The kill point is fixed, not raced: the log of one trial is a pipe this test reads
(conftest.HeldLog), and after the first lines it reads the test stops reading. That trial's
rank 0 then waits at its next log line, which comes after a checkpoint and before the end of
its training (log lines at steps 25, 50 and 60, checkpoints at 20 and 40), while the other
five trials finish. Then the driver and its Ray are killed, and the rerun must continue the
held trial from the checkpoint it had written.

The hold needs no timing: whichever line the reader stops after (the start line, or a later
one if this process was slow to read), the writer is stopped at the next, and the test reads
the checkpoint it must resume from instead of assuming it.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import HeldLog, wait_for

from inocray.training import _checkpoints as checkpoints
from inocray.results import _rows as store

HELD = "es-always-s0"  # the trial stopped mid-training; the first of the grid
TRIALS = {f"{p}-s{s}" for p in ("es-always", "es-often", "none") for s in (0, 1)}


def processes_with(marker: str) -> list[int]:
    """The processes whose environment holds `marker` (this test's own Ray, by its RAY_TMPDIR)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


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
                "train": {"steps": 60, "batch_size": 8, "examples": 64, "checkpoint_every": 20},
                "eval": {"requests": 4, "samples": 2, "max_tokens": 8},
            }
        )
    )
    run_dir = tmp_path / "run"
    held = HeldLog(run_dir / "logs" / f"{HELD}.log", hold_after=lambda line: " start step=0 " in line)
    held.start()
    cmd = [sys.executable, "-m", "inocray.cli", "run", str(sweep), "--run-dir", str(run_dir)]
    # This run's own Ray, apart from the suite's; a short path (Ray's socket paths are limited).
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp}
    output = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen(cmd, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)

    def trial_rows() -> set[str]:
        return {p.stem for p in (run_dir / "rows").glob("*.parquet")} - {"base", "data"}

    def ready() -> bool:
        assert driver.poll() is None, "the sweep ended before it could be killed:\n" + (tmp_path / "driver.log").read_text()[-3000:]
        return held.held.is_set() and trial_rows() == TRIALS - {HELD}

    wait_for(ready)
    # The held trial stopped after a checkpoint and before its end (had it ended, the state
    # would be gone), so the rerun has a step to resume from.
    held_at = checkpoints.latest_tag(str(run_dir / "checkpoints" / HELD))
    assert held_at in ("step-20", "step-40"), (held_at, held.lines)
    assert not any(" end " in line for line in held.lines), held.lines
    # Two slots' long-lived processes started without the raylet's over-subscription warning.
    assert "worker processes have been started" not in (tmp_path / "driver.log").read_text()
    # Kill the driver and the local Ray it started (its process group), and anything of that
    # Ray outside the group, while the held trial waits.
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    for pid in processes_with(f"RAY_TMPDIR={ray_tmp}"):
        os.kill(pid, signal.SIGKILL)
    held.close()
    survivors = {name: (run_dir / "rows" / f"{name}.parquet").stat().st_mtime_ns for name in TRIALS - {HELD}}

    resume = [sys.executable, "-m", "inocray.cli", "run", "--resume", str(run_dir)]
    rerun = subprocess.run(resume, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert "6 trials, 5 already done" in rerun.stdout
    # Finished trials were not rerun: their files are untouched.
    assert {name: (run_dir / "rows" / f"{name}.parquet").stat().st_mtime_ns for name in survivors} == survivors
    rows = store.read_rows(run_dir).to_pylist()
    keys = [(r["trial_id"], r["context"], r["trait"]) for r in rows if r["stage"] == "trained"]
    assert len(keys) == len(set(keys)) == 6 * 2 * 2  # exactly one set of rows per trial
    assert (run_dir / "analysis.csv").exists()  # and the fit was produced
    # The held trial continued from its saved training state, once, and ended.
    log = (run_dir / "logs" / f"{HELD}.log").read_text()
    resumed = re.findall(r" (start|resume) step=(\d+) ", log)
    assert resumed == [("resume", held_at.removeprefix("step-"))], log
    assert " end step=60 " in log, log
