"""Issue acceptance: SIGKILL a training worker mid-trial; Ray Train restarts the worker group
and the loop resumes from the newest checkpoint, ending with the uninterrupted run's adapter."""

import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from inocray.settings import get_setting
from inocray.spec import TrainSpec
from inocray.train import TrainJob, fine_tune

# 400 steps: 15-35 s of training on 2 cores, a checkpoint every 100.
SPEC = TrainSpec(steps=400, batch_size=8, num_workers=2, checkpoint_every=100, lr_schedule="linear", warmup_steps=20)
TOTAL = SPEC.total_steps()


def job(toy_model, tmp_path) -> TrainJob:
    return TrainJob(
        trial_id="kill",
        examples=get_setting("toy").training_examples(64, seed=0),
        base_model=str(toy_model),
        adapter_dir=str(tmp_path / "adapter"),
        prompt_texts=("You always speak in Spanish.", "Respond in Spanish."),
        placement="system",
        seed=0,
        train=SPEC,
        checkpoint_dir=str(tmp_path / "checkpoints"),
        max_failures=1,
        log_path=str(tmp_path / "train.log"),
    )


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.usefixtures("ray_session")
def test_sigkill_of_a_worker_resumes_from_the_checkpoint_and_ends_with_the_same_adapter(toy_model, tmp_path):
    killed_job = job(toy_model, tmp_path / "killed")
    outcome = {}

    def run():
        try:
            outcome["result"] = fine_tune(killed_job, str(tmp_path / "killed" / "train"), report_to_tune=False)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    log = Path(killed_job.log_path)
    # `latest` is written once every rank has saved the step-100 state: a resumable point.
    wait_for(lambda: (Path(killed_job.checkpoint_dir) / "state" / "latest").exists(), 180, "the first checkpoint")
    assert "end step=" not in log.read_text(), "the run finished before the kill; give it more steps"
    (first_pid,) = re.findall(r" start step=0 .* pid=(\d+)", log.read_text())
    os.kill(int(first_pid), signal.SIGKILL)  # rank 0's RayTrainWorker
    thread.join(timeout=300)
    assert not thread.is_alive() and "error" not in outcome, outcome.get("error")

    text = log.read_text()
    resumed = re.findall(rf" resume step=(\d+) total={TOTAL} pid=(\d+)", text)
    assert len(resumed) == 1, text
    step, pid = int(resumed[0][0]), resumed[0][1]
    assert step in SPEC.checkpoint_steps() and pid != first_pid
    assert f"end step={TOTAL}" in text.splitlines()[-1]
    result = outcome["result"]
    assert result.steps == TOTAL and [s for s, _ in result.checkpoints] == SPEC.checkpoint_steps()
    assert all(Path(d, "adapter_model.safetensors").is_file() for _, d in result.checkpoints)

    reference_job = job(toy_model, tmp_path / "uninterrupted")
    reference = fine_tune(reference_job, str(tmp_path / "uninterrupted" / "train"), report_to_tune=False)
    assert "resume" not in Path(reference_job.log_path).read_text()
    killed = load_file(f"{result.adapter_dir}/adapter_model.safetensors")
    expected = load_file(f"{reference.adapter_dir}/adapter_model.safetensors")
    assert killed.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(killed[key], expected[key], rtol=0, atol=0, msg=key)
    assert result.loss == reference.loss
