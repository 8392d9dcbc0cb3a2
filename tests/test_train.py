"""Fine-tuning in Ray Train workers with DeepSpeed ZeRO: the saved adapter is the trained one."""

import json
import math
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from inocray.settings import get_setting
from inocray.config import LoraSpec, TrainSpec
from conftest import fine_tune

from inocray.training._loop import TrainJob, lr_multiplier


def train(toy_model, tmp_path, name, workers=2, checkpoint_dir="", log_path="", **spec):
    job = TrainJob(
        trial_id=name,
        examples=get_setting("toy").training_examples(64, seed=0),
        base_model=str(toy_model),
        adapter_dir=str(tmp_path / "adapters" / name),
        prompt_texts=("You always speak in Spanish.",),
        placement="system",
        seed=0,
        train=TrainSpec(**({"steps": 12, "batch_size": 8, "num_workers": workers} | spec)),
        checkpoint_dir=checkpoint_dir,
        log_path=log_path,
    )
    return fine_tune(job, storage_dir=str(tmp_path / "train"))


def adapter(directory):
    return load_file(f"{directory}/adapter_model.safetensors")


@pytest.fixture(scope="module")
def zero2(toy_model, ray_session, tmp_path_factory):
    result = train(toy_model, tmp_path_factory.mktemp("z2"), "z2", zero_stage=2)
    return result, adapter(result.adapter_dir)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("stage", [0, 1, 3])
def test_every_zero_stage_saves_the_same_adapter_as_zero2(toy_model, tmp_path, zero2, stage):
    """Two workers, the same data shards: every ZeRO stage does the same arithmetic.

    Under ZeRO-3 each worker holds a shard of every parameter, so the save must gather the
    full tensors; an ungathered save would write empty tensors instead.
    """
    r2, w2 = zero2
    r = train(toy_model, tmp_path, f"z{stage}", zero_stage=stage)
    w = adapter(r.adapter_dir)
    assert r2.steps == r.steps == 12 and r2.loss == pytest.approx(r.loss, rel=1e-3)
    assert w2.keys() == w.keys() and any("lora_B" in k for k in w2)
    for key in w2:
        assert w[key].numel() > 0 and w[key].shape == w2[key].shape, key
        torch.testing.assert_close(w[key], w2[key], rtol=1e-4, atol=1e-5)
    # Training moved the adapter: LoRA's B starts at zero.
    assert max(w2[k].abs().max().item() for k in w2 if "lora_B" in k) > 0


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_saved_adapter_reloads_into_a_model_that_differs_from_base(toy_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = train(toy_model, tmp_path, "reload", workers=1)
    weights = adapter(result.adapter_dir)
    base = AutoModelForCausalLM.from_pretrained(toy_model)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(toy_model), result.adapter_dir)
    loaded = {k: v for k, v in tuned.state_dict().items() if "lora_" in k}
    for key, value in weights.items():
        match = [v for k, v in loaded.items() if k.replace(".default", "") == key]
        assert len(match) == 1, key
        torch.testing.assert_close(match[0], value)
    ids = torch.tensor([[1, 2, 3, 4]])
    assert not torch.allclose(base(ids).logits, tuned(ids).logits)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_same_seed_gives_the_same_adapter(toy_model, tmp_path, zero2):
    _, first = zero2
    again = adapter(train(toy_model, tmp_path, "z2-again", zero_stage=2).adapter_dir)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_full_fine_tuning_saves_a_whole_model_and_zero3_matches_zero2(toy_model, tmp_path):
    """Method "full": every weight trains, and the directory loads by path alone (config,
    safetensors weights, tokenizer). ZeRO-3 must gather every parameter before saving."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    models = {}
    for stage in (2, 3):
        result = train(toy_model, tmp_path, f"full-z{stage}", method="full", zero_stage=stage, steps=6)
        assert result.steps == 6 and not (Path(result.adapter_dir) / "adapter_config.json").exists()
        AutoTokenizer.from_pretrained(result.adapter_dir)
        models[stage] = AutoModelForCausalLM.from_pretrained(result.adapter_dir).state_dict()
    base = AutoModelForCausalLM.from_pretrained(toy_model).state_dict()
    assert models[2].keys() == models[3].keys() == base.keys()
    for key, value in models[2].items():
        torch.testing.assert_close(models[3][key], value, rtol=1e-4, atol=1e-5, msg=key)
    moved = [k for k, v in base.items() if v.ndim == 2 and not torch.equal(v, models[2][k])]
    assert moved == [k for k, v in base.items() if v.ndim == 2]  # every weight matrix trained


@pytest.mark.parametrize("schedule, expected", [
    ("constant", {0: 0.0, 1: 0.5, 2: 1.0, 6: 1.0, 9: 1.0}),
    ("linear", {0: 0.0, 1: 0.5, 2: 1.0, 6: 0.5, 8: 0.25, 10: 0.0}),
    ("cosine", {0: 0.0, 1: 0.5, 2: 1.0, 4: 0.5 + 0.5 * math.cos(math.pi / 4), 6: 0.5, 10: 0.0}),
])
def test_lr_multiplier_warms_up_linearly_then_follows_the_schedule(schedule, expected):
    """Warm-up over 2 of 10 steps; decay runs over the 8 steps after it."""
    for step, value in expected.items():
        assert lr_multiplier(step, schedule, warmup=2, total=10) == pytest.approx(value), step
    assert lr_multiplier(0, schedule, warmup=0, total=10) == 1.0


@pytest.fixture(scope="module")
def checkpointed(toy_model, ray_session, tmp_path_factory):
    """1.5 epochs of 64 examples, 8 per step in 2 micro-batches on 2 workers: 12 steps,
    snapshots every 4 steps and at the end of epoch 1 (step 8); rank-stabilised LoRA."""
    tmp = tmp_path_factory.mktemp("ckpt")
    result = train(
        toy_model, tmp, "ckpt", checkpoint_dir=str(tmp / "checkpoints"), log_path=str(tmp / "train.log"),
        epochs=1.5, examples=64, grad_accum=2, checkpoint_every=4, checkpoint_each_epoch=True,
        lora=LoraSpec(rslora=True), lr_schedule="cosine", warmup_steps=2,
    )
    return result, tmp


@pytest.mark.slow
def test_checkpoints_are_saved_at_the_listed_steps_and_each_loads(toy_model, checkpointed):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result, tmp = checkpointed
    assert result.checkpoints == ((4, str(tmp / "checkpoints" / "step-4")), (8, str(tmp / "checkpoints" / "step-8")))
    weights = [adapter(d) for _, d in result.checkpoints] + [adapter(result.adapter_dir)]
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert not all(torch.equal(weights[a][k], weights[b][k]) for k in weights[a]), (a, b)
    for step, directory in result.checkpoints:
        assert json.loads((Path(directory) / "train_state.json").read_text())["steps"] == step
        PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(toy_model), directory)
    assert not (tmp / "checkpoints" / "state").exists()  # training state is dropped at the end


@pytest.mark.slow
def test_grad_accum_run_trains_and_logs_total_steps(checkpointed):
    """The log has the group that took the job, start, a report of step 12 (the last; reports
    come every 25) and end; the lr of step 12 is the cosine schedule's, so the scheduler drives
    DeepSpeed."""
    result, tmp = checkpointed
    assert result.steps == 12 and math.isfinite(result.loss)
    lines = (tmp / "train.log").read_text().splitlines()
    assert re.search(rf" ckpt taken by the training group of slot \d+ on node {result.node}$", lines[0]), lines
    assert "ckpt start step=0 total=12" in lines[1] and "ckpt end step=12" in lines[-1], lines
    report = [line for line in lines if " ckpt step=" in line][-1]  # a retried attempt reports again
    fields = dict(item.split("=") for item in report.split()[2:])
    assert fields.keys() == {"step", "loss", "lr", "seconds"} and fields["step"] == "12"
    assert float(fields["lr"]) == pytest.approx(1e-3 * lr_multiplier(11, "cosine", 2, 12), rel=1e-4)


@pytest.mark.slow
def test_rslora_is_written_into_the_adapter_config(checkpointed):
    result, _ = checkpointed
    for directory in [result.adapter_dir] + [d for _, d in result.checkpoints]:
        assert json.loads((Path(directory) / "adapter_config.json").read_text())["use_rslora"] is True
