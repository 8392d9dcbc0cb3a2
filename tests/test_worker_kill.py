"""SIGKILL a training worker mid-trial: Ray Train restarts the worker group and the loop resumes
from the newest checkpoint (on local disk, or on S3 where every rank uploads its own part of the
DeepSpeed state), ending with the uninterrupted run's adapter.

The kill point is fixed, not raced: rank 0's log is a pipe this test reads (conftest.HeldLog),
and after the start line the test stops reading. Rank 0 then waits at its next line, after
the checkpoint of step 20 and before any later one, while the test kills it.
"""

import os
import re
import signal
import threading
from pathlib import Path

import pytest
import torch
from conftest import HeldLog, fine_tune, s3_keys, wait_for
from safetensors.torch import load_file

from inocray.training import _checkpoints as checkpoints
from inocray.results import storage
from inocray.settings import get_setting
from inocray.config import TrainSpec
from inocray.training import TrainJob

# Two workers; log lines at steps 25 and 40 (train.REPORT_EVERY), checkpoints at 10, 20, 30.
SPEC = TrainSpec(steps=40, batch_size=8, num_workers=2, checkpoint_every=10, lr_schedule="linear", warmup_steps=5)
TOTAL = SPEC.total_steps()


def job(toy_model, out: str, log: Path) -> TrainJob:
    """The trial; its models and training state go under `out`, a directory or an s3:// URI."""
    return TrainJob(
        trial_id="kill",
        examples=get_setting("toy").training_examples(64, seed=0),
        base_model=str(toy_model),
        adapter_dir=f"{out}/adapter",
        prompt_texts=("You always speak in Spanish.", "Respond in Spanish."),
        placement="system",
        seed=0,
        train=SPEC,
        checkpoint_dir=f"{out}/checkpoints",
        max_failures=1,
        log_path=str(log),
    )


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("where", ["local", "s3"])
def test_sigkill_of_a_worker_resumes_from_the_checkpoint_and_ends_with_the_same_adapter(
        toy_model, tmp_path, request, where):
    out = request.getfixturevalue("s3") if where == "s3" else str(tmp_path / "killed")
    log = HeldLog(tmp_path / "killed.log", hold_after=lambda line: " start step=0 " in line)
    log.start()
    killed_job = job(toy_model, out, log.path)
    outcome = {}

    def run():
        try:
            outcome["result"] = fine_tune(killed_job, str(tmp_path / "killed-train"))
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(log.held.is_set)
    # Rank 0 waits at its step-25 line, after the step-20 checkpoint; had this reader been so
    # slow that the step-25 line came with the start line, it waits at step 40, after step 30.
    held_at = 30 if " step=25 " in "".join(log.lines) else 20
    latest = storage.join(killed_job.checkpoint_dir, "state", checkpoints.LATEST)
    wait_for(lambda: storage.is_file(latest) and storage.read_bytes(latest) == f"step-{held_at}".encode())
    if where == "s3":  # each rank uploaded its own optimizer shard into the shared tag
        shards = [k for k in s3_keys(killed_job.checkpoint_dir) if k.startswith(f"state/step-{held_at}/")]
        assert {re.sub(r".*zero_pp_rank_(\d+)_.*", r"\1", k) for k in shards if "optim_states" in k} == {"0", "1"}
    (first_pid,) = re.findall(r" start step=0 .* pid=(\d+)", "".join(log.lines))
    os.kill(int(first_pid), signal.SIGKILL)  # rank 0's RayTrainWorker, waiting at its next line
    log.release()
    thread.join()
    log.close()
    assert "error" not in outcome, outcome.get("error")

    text = "".join(log.lines)
    resumed = re.findall(rf" resume step=(\d+) total={TOTAL} pid=(\d+)", text)
    assert len(resumed) == 1 and resumed[0][0] == str(held_at) and resumed[0][1] != first_pid, text
    assert f"end step={TOTAL}" in text.splitlines()[-1]
    result = outcome["result"]
    assert result.steps == TOTAL and [s for s, _ in result.checkpoints] == SPEC.checkpoint_steps()
    assert all(storage.is_file(storage.join(d, "adapter_model.safetensors")) for _, d in result.checkpoints)
    assert checkpoints.latest_tag(killed_job.checkpoint_dir) is None  # the state is dropped at the end

    reference_job = job(toy_model, str(tmp_path / "uninterrupted"), tmp_path / "uninterrupted.log")
    reference = fine_tune(reference_job, str(tmp_path / "uninterrupted-train"))
    assert "resume" not in Path(reference_job.log_path).read_text()
    killed = load_file(f"{storage.local_copy(result.adapter_dir)}/adapter_model.safetensors")
    expected = load_file(f"{reference.adapter_dir}/adapter_model.safetensors")
    assert killed.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(killed[key], expected[key], rtol=0, atol=0, msg=key)
    assert result.loss == reference.loss
