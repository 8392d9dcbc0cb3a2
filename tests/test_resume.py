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

The same hold stops a trial after its state of step 20 is saved so that a file of that state
can be tampered with before `--resume` (a run directory is input, not code).
"""

import os
import re
import signal
import subprocess
import sys
import tempfile

import pytest
import yaml
from conftest import HeldLog, processes_with, tamper, tiny_sweep, wait_for

from inocray.training import _checkpoints as checkpoints
from inocray.results import _rows as store

HELD = "es-always-s0"  # the trial stopped mid-training; the first of the grid
TRIALS = {f"{p}-s{s}" for p in ("es-always", "es-often", "none") for s in (0, 1)}


def start_held(tmp_path, doc: dict):
    """`inocray run` of sweep `doc` into tmp_path/run, in a Ray of its own, with HELD's log held
    after its start line: the run directory, the environment, the held log and the driver."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(doc))
    run_dir = tmp_path / "run"
    held = HeldLog(run_dir / "logs" / f"{HELD}.log", hold_after=lambda line: " start step=0 " in line)
    held.start()
    cmd = [sys.executable, "-m", "inocray.cli", "run", str(sweep), "--run-dir", str(run_dir)]
    # This run's own Ray, apart from the suite's; a short path (Ray's socket paths are limited).
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="ray-", dir="/tmp")}
    output = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen(cmd, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    return run_dir, env, held, driver


def running(driver, tmp_path) -> None:
    assert driver.poll() is None, "the sweep ended before it could be killed:\n" + (tmp_path / "driver.log").read_text()[-3000:]


def kill(driver, env: dict, held: HeldLog) -> None:
    """Kill the driver and the local Ray it started (its process group), and anything of that
    Ray outside the group, while the held trial waits; then stop holding its log."""
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    for pid in processes_with(f"RAY_TMPDIR={env['RAY_TMPDIR']}"):
        os.kill(pid, signal.SIGKILL)
    held.close()


def resume(run_dir, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inocray.cli", "run", "--resume", str(run_dir)],
                          env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_sigkill_of_the_driver_then_rerun_finishes_without_repeating(toy_model, tmp_path):
    run_dir, env, held, driver = start_held(tmp_path, {
        "name": "killed",
        "setting": "toy",
        "model": str(toy_model),
        "prompts": ["es-always", "es-often"],
        "seeds": [0, 1],
        "train": {"steps": 60, "batch_size": 8, "examples": 64, "checkpoint_every": 20},
        "eval": {"requests": 4, "samples": 2, "max_tokens": 8},
    })

    def trial_rows() -> set[str]:
        return {p.stem for p in (run_dir / "rows").glob("*.parquet")} - {"base", "data"}

    def ready() -> bool:
        running(driver, tmp_path)
        return held.held.is_set() and trial_rows() == TRIALS - {HELD}

    wait_for(ready)
    # The held trial stopped after a checkpoint and before its end (had it ended, the state
    # would be gone), so the rerun has a step to resume from.
    held_at = checkpoints.latest_tag(str(run_dir / "checkpoints" / HELD))
    assert held_at in ("step-20", "step-40"), (held_at, held.lines)
    assert not any(" end " in line for line in held.lines), held.lines
    # Two slots' long-lived processes started without the raylet's over-subscription warning.
    assert "worker processes have been started" not in (tmp_path / "driver.log").read_text()
    kill(driver, env, held)
    survivors = {name: (run_dir / "rows" / f"{name}.parquet").stat().st_mtime_ns for name in TRIALS - {HELD}}

    rerun = resume(run_dir, env)
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


@pytest.mark.slow
def test_resuming_a_tampered_checkpoint_fails_its_trial_and_runs_nothing(toy_model, tmp_path):
    """A run directory is input: a state file that would run code when unpickled fails the trial
    with one sentence, and what it holds never runs."""
    run_dir, env, held, driver = start_held(tmp_path, tiny_sweep(
        model=str(toy_model), max_failures=0, train={"steps": 60, "checkpoint_every": 20}))
    state = run_dir / "checkpoints" / HELD / "state"

    def ready() -> bool:
        running(driver, tmp_path)
        return held.held.is_set() and checkpoints.latest_tag(str(state.parent)) == "step-20"

    wait_for(ready)  # rank 0 waits to log step 25, after the state of step 20 is saved
    kill(driver, env, held)
    marker = tmp_path / "marker"
    [file] = (state / "step-20").glob("mp_rank_*_model_states.pt")  # every rank reads it
    tamper(file, marker)

    rerun = resume(run_dir, env)
    assert not marker.exists(), rerun.stdout[-3000:]
    assert "1 trial(s) failed" in rerun.stdout, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"{file} is not training state that inocray wrote: it holds posix.system, which is not data" in rerun.stdout
    assert not (run_dir / "rows" / f"{HELD}.parquet").exists()
