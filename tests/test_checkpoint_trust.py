"""A run directory's training state is input, not code: resuming loads DeepSpeed's files as data.

DeepSpeed writes its training state as pickles and loads them with weights_only=False, so a
checkpoint file that someone else put into a run directory would run code on resume. These
tests save real training state from the engine a trial builds (every ZeRO stage), resume
from it, and then tamper with each of its files in turn.
"""

import re

import pytest
import torch
from conftest import Payload, tamper

from inocray.config import TrainSpec
from inocray.errors import InputError
from inocray.settings import get_setting
from inocray.training import _checkpoints as checkpoints
from inocray.training._loop import TrainJob, build_engine, build_model, encode_shard, optimizer_step

STAGES = [(0, "lora"), (1, "lora"), (2, "lora"), (3, "lora"), (2, "full")]


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory):
    """A process group of one, as a trial's rank 0 has (Ray Train sets these variables), for
    the whole module: DeepSpeed keeps the group it first sees until its own teardown."""
    import deepspeed.comm
    import torch.distributed as dist

    with pytest.MonkeyPatch.context() as env:
        for key in ("LOCAL_RANK", "RANK"):
            env.setenv(key, "0")
        env.setenv("WORLD_SIZE", "1")
        dist.init_process_group("gloo", init_method=f"file://{tmp_path_factory.mktemp('group') / 'store'}",
                                rank=0, world_size=1)
        yield
        deepspeed.comm.destroy_process_group()  # and DeepSpeed forgets its groups


def trial(toy_model, stage: int, method: str):
    """A trial's engine, as a worker builds it (the same seed gives the same start), and a batch."""
    from transformers import AutoTokenizer

    spec = TrainSpec(steps=4, batch_size=4, num_workers=1, zero_stage=stage, method=method)
    job = TrainJob(trial_id="t", examples=get_setting("toy").training_examples(16, seed=0), base_model=str(toy_model),
                   adapter_dir="", prompt_texts=("You always speak in Spanish.",), placement="system", seed=0,
                   train=spec)
    torch.manual_seed(0)
    engine = build_engine(spec, build_model(job), world=1)
    tokenizer = AutoTokenizer.from_pretrained(toy_model)
    shard = encode_shard(job, tokenizer, rank=0, world=1)
    return engine, [shard[:engine.train_micro_batch_size_per_gpu()]], tokenizer.eos_token_id


def losses(engine, batches, pad, steps):
    """The loss of each of `steps` optimizer steps on `batches`, dropout seeded alike."""
    out = []
    for step in range(steps):
        torch.manual_seed(step)
        out.append(optimizer_step(engine, batches, pad))
    return out


@pytest.mark.slow
@pytest.mark.usefixtures("one_rank")
@pytest.mark.parametrize("stage, method", STAGES)
def test_resuming_loads_real_training_state_as_data(toy_model, tmp_path, stage, method):
    cp = str(tmp_path / "checkpoints")
    trained, batches, pad = trial(toy_model, stage, method)
    losses(trained, batches, pad, 2)
    checkpoints.save_state(trained, cp, 2, rank=0)
    ahead = losses(trained, batches, pad, 2)  # steps 3 and 4 from the saved state
    resumed, _, _ = trial(toy_model, stage, method)
    assert checkpoints.resume(resumed, cp, rank=0) == 2
    # The same weights, optimizer moments and lr schedule: the next two steps match exactly.
    assert losses(resumed, batches, pad, 2) == ahead
    fresh, _, _ = trial(toy_model, stage, method)  # what a resume that loaded nothing would give
    assert losses(fresh, batches, pad, 2) != ahead
    for engine in (trained, resumed, fresh):
        engine.destroy()


@pytest.mark.slow
@pytest.mark.usefixtures("one_rank")
@pytest.mark.parametrize("stage, method", [(2, "lora"), (3, "lora")])
def test_a_state_file_that_would_run_code_is_refused_and_never_runs(toy_model, tmp_path, stage, method):
    cp, marker = str(tmp_path / "checkpoints"), tmp_path / "marker"
    engine, batches, pad = trial(toy_model, stage, method)
    losses(engine, batches, pad, 1)
    checkpoints.save_state(engine, cp, 1, rank=0)
    engine.destroy()
    files = sorted((tmp_path / "checkpoints" / "state" / "step-1").glob("*.pt"))
    assert len(files) == 2  # the model's state and the ZeRO optimizer's: each is loaded on resume
    for file in files:
        original = file.read_bytes()
        tamper(file, marker)
        resumed, _, _ = trial(toy_model, stage, method)
        with pytest.raises(InputError, match=re.escape(f"{file} is not training state that inocray wrote: "
                                                       "it holds posix.system, which is not data")):
            checkpoints.resume(resumed, cp, rank=0)
        resumed.destroy()
        assert not marker.exists(), file
        file.write_bytes(original)
    # The payload is live: DeepSpeed's own loader (weights_only=False) runs it.
    torch.save({"note": Payload(marker)}, files[0])
    torch.load(files[0], weights_only=False)
    assert marker.exists()
