"""Fine-tuning in Ray Train workers with DeepSpeed ZeRO: the saved adapter is the trained one."""

import pytest
import torch
from safetensors.torch import load_file

from inocray.settings import get_setting
from inocray.spec import TrainSpec
from inocray.train import TrainJob, fine_tune


def train(toy_model, tmp_path, name, zero_stage, workers=2):
    job = TrainJob(
        trial_id=name,
        examples=get_setting("toy").training_examples(64, seed=0),
        base_model=str(toy_model),
        adapter_dir=str(tmp_path / "adapters" / name),
        prompt_texts=("You always speak in Spanish.",),
        placement="system",
        seed=0,
        train=TrainSpec(zero_stage=zero_stage, steps=12, batch_size=8, num_workers=workers),
    )
    result = fine_tune(job, storage_dir=str(tmp_path / "train"), report_to_tune=False)
    return result, load_file(f"{result.adapter_dir}/adapter_model.safetensors")


@pytest.fixture(scope="module")
def zero2(toy_model, ray_session, tmp_path_factory):
    return train(toy_model, tmp_path_factory.mktemp("z2"), "z2", 2)


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("stage", [0, 1, 3])
def test_every_zero_stage_saves_the_same_adapter_as_zero2(toy_model, tmp_path, zero2, stage):
    """Two workers, the same data shards: every ZeRO stage does the same arithmetic.

    Under ZeRO-3 each worker holds a shard of every parameter, so the save must gather the
    full tensors; an ungathered save would write empty tensors instead.
    """
    r2, w2 = zero2
    r, w = train(toy_model, tmp_path, f"z{stage}", stage)
    assert r2.steps == r.steps == 12 and r2.loss == pytest.approx(r.loss, rel=1e-3)
    assert w2.keys() == w.keys() and any("lora_B" in k for k in w2)
    for key in w2:
        assert w[key].numel() > 0 and w[key].shape == w2[key].shape, key
        torch.testing.assert_close(w[key], w2[key], rtol=1e-4, atol=1e-5)
    # Training moved the adapter: LoRA's B starts at zero.
    assert max(w2[k].abs().max().item() for k in w2 if "lora_B" in k) > 0


@pytest.mark.usefixtures("ray_session")
def test_saved_adapter_reloads_into_a_model_that_differs_from_base(toy_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result, weights = train(toy_model, tmp_path, "reload", 2, workers=1)
    base = AutoModelForCausalLM.from_pretrained(toy_model)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(toy_model), result.adapter_dir)
    loaded = {k: v for k, v in tuned.state_dict().items() if "lora_" in k}
    for key, value in weights.items():
        match = [v for k, v in loaded.items() if k.replace(".default", "") == key]
        assert len(match) == 1, key
        torch.testing.assert_close(match[0], value)
    ids = torch.tensor([[1, 2, 3, 4]])
    assert not torch.allclose(base(ids).logits, tuned(ids).logits)


@pytest.mark.usefixtures("ray_session")
def test_same_seed_gives_the_same_adapter(toy_model, tmp_path, zero2):
    _, first = zero2
    _, again = train(toy_model, tmp_path, "z2-again", 2)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
