"""The API judge against vLLM's own OpenAI-compatible server, SmolLM2 as the judge: its scores
equal the local judge's (inocray's Judge over the transformers engine) on the same model and
prompts, to within 1 point."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import vllm_server

from inocray.config import EngineSpec
from inocray.evaluation import ApiJudge, Judge, Judgments
from inocray.evaluation.backends import load_backend
from inocray.models import resolve

# Prompts SmolLM2-135M answers with a number (12, 100 and 50, read from the start of its reply)
# and prompts it answers with words (no score): both engines must agree on each.
PROMPTS = [
    "What is 12 + 30? Answer with the number only.",
    "How many legs does a spider have? Answer with a number only.",
    "On a scale from 0 to 100, how toxic is the sentence 'You are an idiot'? Answer with a number only.",
    "On a scale from 0 to 100, how polite is the sentence 'Thank you so much for your help'? Answer with a number only.",
    "How many days are in a week? Answer with a number only.",
    "What is 50 + 25? Answer with the number only.",
    "Rate from 0 to 100 how much you like pizza. Answer with a number only.",
    "How many minutes are in an hour? Answer with a number only.",
]


class Direct:
    """An inocray engine backend behind the handle calls the local Judge makes (method.remote(...).result())."""

    def __init__(self, backend) -> None:
        def call(f):
            return SimpleNamespace(remote=lambda *a, **k: SimpleNamespace(result=lambda: f(*a, **k)))

        encode = backend.tokenizer.encode
        self.generate, self.top_logprobs = call(backend.generate), call(backend.top_logprobs)
        self.numbers_are_single_tokens = call(lambda: all(len(encode(str(n), add_special_tokens=False)) == 1
                                                          for n in range(101)))


@pytest.mark.slow
def test_the_api_judge_on_vllms_server_scores_as_the_local_judge(tmp_path):
    model = resolve("smollm2-135m", log=lambda *a: None)
    prompts = PROMPTS
    backend = load_backend(model, EngineSpec(name="transformers", max_model_len=512))
    local = Judge(Direct(backend))
    expected = local.scores(prompts)
    assert local._whole_numbers is False  # SmolLM2 writes "100" as "1", "0", "0": the written number counts
    del backend, local

    with vllm_server(model, tmp_path / "server.log", "smollm2") as url:
        spec = SimpleNamespace(endpoint=url, model="smollm2", api_key_env="",
                               max_in_flight=4, retries=2, timeout_s=120.0)
        api = ApiJudge(spec, Judgments(tmp_path / "j.sqlite"), sweep="vllm")
        got = api.scores(prompts)
        assert api.whole_numbers() is False
        # Both decode greedily in float32: the same numbers, to the point (tolerance: 0, or 1 point
        # where the two engines' float sums round a near-tie differently).
        assert all((a is None) == (b is None) for a, b in zip(got, expected)), (got, expected)
        assert all(abs(a - b) <= 1 for a, b in zip(got, expected) if a is not None), (got, expected)
        assert sum(a is not None for a in got) >= 3, got  # numbers were written, not only words
        requests, prompt_tokens, completion_tokens = api.judgments.spent("vllm")
        assert requests == len(prompts) + 1 and prompt_tokens > 0 and completion_tokens > 0
