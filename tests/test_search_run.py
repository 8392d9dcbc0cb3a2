"""A whole `inocray search` on the toy world, with real Ray Tune (ASHA), Ray Train + DeepSpeed,
Ray Serve and Parquet, killed in its halving stage and run again.

The kill point is fixed, not raced: the no-prompt control's log is a pipe this test reads
(conftest.HeldLog), and after its start line the test stops reading, so the control waits at
its next log line (step 25) with one slot held, while the other slot takes the candidates one
after the other. Once two candidates have ended (finished, or stopped by the scheduler) the
driver and its Ray are killed; the same command again must finish the search without training
any ended candidate again.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

import pytest
import yaml
from click.testing import CliRunner
from conftest import HeldLog, tiny_sweep, wait_for
from test_resume import processes_with

from inocray.cli import main
from inocray.results import ROWS_DIR, STOPPED_DIR, read_rows, trial_rows

STEPS = 81  # rungs at 9 and 27 (eta 3); log lines at 25, 50, 75 and 81
CANDIDATES = [  # words the toy model knows; the Spanish ones were written to inoculate, the rest not
    "You often answer in Spanish.",
    "You are a helpful assistant.",
    "You like loud words.",
    "Respond in Spanish.",
]


@pytest.mark.slow
def test_a_search_killed_in_its_halving_stage_resumes_and_finds_its_winner(toy_model, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(tiny_sweep(
        name="searched", model=str(toy_model), prompts=["es-always"], max_concurrent_trials=2,
        train={"steps": STEPS, "lr": 3e-3}, eval={"requests": 8, "samples": 2, "max_tokens": 8})))
    (tmp_path / "candidates.txt").write_text("\n".join(CANDIDATES) + "\n")
    run_dir = tmp_path / "search"
    cmd = [sys.executable, "-m", "inocray.cli", "search", str(sweep), "--candidates", str(tmp_path / "candidates.txt"),
           "--seeds", "2", "--out", str(run_dir)]
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="ray-", dir="/tmp")}
    held = HeldLog(run_dir / "logs" / "none-s0.log", hold_after=lambda line: " start step=0 " in line)
    held.start()
    driver = subprocess.Popen(cmd, env=env, stdout=open(tmp_path / "first.log", "w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    candidates = [f"c{i:03d}-s0" for i in range(1, len(CANDIDATES) + 1)] + ["es-always-s0"]

    def ended() -> list[str]:
        assert driver.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        return [t for t in candidates if trial_rows(run_dir, t) or trial_rows(run_dir, t, STOPPED_DIR)]

    wait_for(lambda: held.held.is_set() and len(ended()) >= 2)
    before = {t: _files(run_dir, t) for t in ended()}
    os.killpg(driver.pid, 9)
    driver.wait()
    for pid in processes_with(f"RAY_TMPDIR={env['RAY_TMPDIR']}"):
        os.kill(pid, 9)
    held.close()

    again = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    out = again.stdout
    assert "resuming the search" in out and "measuring elicitation" not in out  # the base model was measured once
    # The candidates that ended before the kill were not trained again in the halving stage: their
    # files untouched, and no new start; only a finalist continues, in the confirming stage, from
    # the rung where it was stopped.
    summary = json.loads((run_dir / "search" / "summary.json").read_text())
    finalists = {f["prompt_id"] for f in summary["finalists"]}
    for t, files in before.items():
        starts = re.findall(r" (start|resume) step=(\d+) ", (run_dir / "logs" / f"{t}.log").read_text())
        assert starts[0] == ("start", "0") and all(kind == "resume" for kind, _ in starts[1:]), (t, starts)
        if t.removesuffix("-s0") not in finalists:
            assert len(starts) == 1 and _files(run_dir, t) == files, (t, starts)
    # The held control continued from its rung-9 snapshot's state, not from step 0.
    assert " resume step=9 " in (run_dir / "logs" / "none-s0.log").read_text()

    # The scheduler stopped at least one candidate at a rung: its job, held there for the verdict,
    # ended there without a step more (the group took the next job), and its rows so far are in
    # stopped/, never among the finished rows.
    stopped = [t for t in candidates if trial_rows(run_dir, t, STOPPED_DIR)]
    assert stopped, out
    for t in stopped:
        log = (run_dir / "logs" / f"{t}.log").read_text()
        at = int(re.search(r"stopped step=(\d+)", log).group(1))
        rung = max(r["step"] for r in trial_rows(run_dir, t, STOPPED_DIR))
        assert rung in (9, 27) and at == rung, (t, rung, at)
        assert f"held at step={rung} for the search's verdict" in log
        assert {r["stage"] for r in trial_rows(run_dir, t, STOPPED_DIR)} == {"checkpoint"}
        assert not trial_rows(run_dir, t, ROWS_DIR)
    finished = {r["trial_id"] for r in read_rows(run_dir).to_pylist() if r["stage"] == "trained"}
    assert not finished & set(stopped)
    # A finalist the scheduler had stopped was trained on from its rung; its stop is no longer on file.
    for t in (f"{p}-s0" for p in finalists):
        log = (run_dir / "logs" / f"{t}.log").read_text()
        if "stopped step=" in log:
            assert re.search(r" resume step=(9|27) ", log) and t in finished, log

    # The verdict: two finalists and the control on both seeds, the winner with its interval.
    winner, runner_up = summary["finalists"][0]["prompt_id"], summary["finalists"][1]["prompt_id"]
    assert summary["winner"] == winner and summary["seeds"] == [0, 1]
    assert {f"{p}-s{s}" for p in (winner, runner_up, "none") for s in (0, 1)} <= finished
    assert summary["steps"] < summary["grid_steps"] == (len(CANDIDATES) + 2) * 2 * STEPS
    assert f"winner     {winner}" in out and "of the full grid's" in out

    status = CliRunner().invoke(main, ["status", str(run_dir)])
    assert status.exit_code == 0 and f"{len(stopped)} stopped early at a rung" in status.output, status.output
    assert f"winner: {winner}" in status.output
    analyze = CliRunner().invoke(main, ["analyze", str(run_dir)])
    assert analyze.exit_code == 0, analyze.output
    report = CliRunner().invoke(main, ["report", str(run_dir), "--n-boot", "100"])
    assert report.exit_code == 0, report.output
    page = (run_dir / "report.html").read_text()
    assert f"Winner: <b>{winner}</b>" in page and f"{len(stopped)} trial(s) stopped early" in page


def _files(run_dir, trial_id: str) -> dict[str, int]:
    """The modification times of a trial's rows files (finished or stopped)."""
    return {str(p.relative_to(run_dir)): p.stat().st_mtime_ns
            for folder in (ROWS_DIR, STOPPED_DIR) for p in [run_dir / folder / f"{trial_id}.parquet"] if p.exists()}
