"""The Serve app: one vLLM engine answers for the base model and for each adapter by name."""

import pytest

from inocray import serve
from inocray.serve import GenerateRequest
from inocray.spec import EngineSpec


def make_adapter(model_dir, path, seed):
    """A LoRA adapter with random (not zero) B, so that it visibly changes the model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False),
    )
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    model.save_pretrained(path)
    return str(path)


@pytest.mark.usefixtures("ray_session")
def test_adapters_and_base_give_different_completions(toy_model, tmp_path):
    a = make_adapter(toy_model, tmp_path / "a", 1)
    b = make_adapter(toy_model, tmp_path / "b", 2)
    handle = serve.start("test-engine", str(toy_model), EngineSpec())
    try:
        chats = [[{"role": "user", "content": text}] for text in ("tell me about the red house", "what is the cat")]

        def complete(adapter=None, path=None):
            request = GenerateRequest(chats, samples=1, max_tokens=8, temperature=0.0, adapter=adapter, adapter_path=path)
            return handle.generate.remote(request).result()

        base, out_a, out_b = complete(), complete("a", a), complete("b", b)
        assert len(base) == 2 and all(len(samples) == 1 for samples in base)
        assert base != out_a and base != out_b and out_a != out_b
        assert complete("a", a) == out_a  # greedy: the same adapter answers the same
    finally:
        serve.stop("test-engine")
