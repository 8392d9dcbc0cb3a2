"""Logprob elicitation: L(s), the mean per-token gain of the training responses under a prompt,
on cases computed by hand, and through the transformers backend against a plain forward pass."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import tiny_sweep

from inocray import chat
from inocray.chat import Example
from inocray.config import EngineSpec, parse_spec
from inocray.evaluation import logprob_elicitation
from inocray.evaluation._logprob import per_example, summarize

def test_per_example_gain_is_the_mean_over_tokens_then_over_examples():
    neutral = [[-1.0, -2.0], [-3.0]]
    prompted = [[-0.5, -1.0], [-1.0]]
    deltas = per_example(neutral, prompted)
    assert deltas.tolist() == [0.75, 2.0]  # (0.5 + 1.0) / 2, then 2.0 / 1
    got = summarize(deltas, np.random.default_rng(0))
    assert got.value == pytest.approx(1.375) and got.n == 2
    assert 0.75 <= got.low <= got.value <= got.high <= 2.0


class _Setting:
    """Two training examples whose responses the fake engine scores."""

    def training_examples(self, n, seed):
        return [Example("q1", "aa"), Example("q2", "bbb")][:n]


class _Engine:
    """Log-probability of each response character: -1 without a system prompt, and -1 + len(prompt)/10
    with one, so a prompt of 5 letters gains 0.5 nats a token on every example."""

    def __init__(self):
        self.calls = 0

    @property
    def response_logprobs(self):
        def remote(chats, responses):
            self.calls += 1
            out = []
            for messages, response in zip(chats, responses):
                system = messages[0]["content"] if messages[0]["role"] == "system" else ""
                out.append([-1.0 + len(system) / 10] * len(response))
            return SimpleNamespace(result=lambda: out)

        return SimpleNamespace(remote=remote)


def test_logprob_elicitation_on_a_fake_engine_is_computed_by_hand():
    spec = parse_spec(tiny_sweep(eval={"logprob_examples": 2}))
    engine = _Engine()
    got = logprob_elicitation(engine, _Setting(), spec, {"none": "", "five": "abcde", "ten": "abcdefghij"})
    assert engine.calls == 1  # every prompt, and C0, in one request
    assert got["none"].value == 0.0
    assert got["five"].value == pytest.approx(0.5) and got["ten"].value == pytest.approx(1.0)
    assert got["ten"].low == pytest.approx(1.0) and got["ten"].high == pytest.approx(1.0)  # no spread: no width


def test_logprob_elicitation_in_batches_gives_the_same_values_and_reports_progress():
    """With `batch`, C0 is one request and the texts `batch` at a time, each followed by a
    progress call; the values are those of the single request."""
    spec = parse_spec(tiny_sweep(eval={"logprob_examples": 2}))
    prompts = {"none": "", "five": "abcde", "ten": "abcdefghij", "three": "abc"}
    whole = logprob_elicitation(_Engine(), _Setting(), spec, prompts)
    engine, seen = _Engine(), []
    got = logprob_elicitation(engine, _Setting(), spec, prompts, batch=2, progress=lambda *a: seen.append(a))
    assert engine.calls == 3 and seen == [(2, 3), (3, 3)]  # C0, then two texts, then one
    assert got == whole


@pytest.fixture(scope="module")
def hf_backend(toy_model):
    from inocray.evaluation.backends.hf import HFBackend

    return HFBackend(str(toy_model), EngineSpec(name="transformers"))


def test_the_transformers_backend_scores_each_response_token_as_a_plain_forward_pass(hf_backend):
    """Batched and left-padded, each token's log-probability is the one a forward pass of that
    sequence alone gives (teacher forcing)."""
    import torch

    tok, model = hf_backend.tokenizer, hf_backend.model
    pairs = [(chat.messages("tell me about the red house", "You always speak in Spanish."), "LA CASA ES ROJA"),
             (chat.messages("describe the dog", None), "the dog is big")]
    prompts = [chat.render(tok, c) for c, _ in pairs]
    replies = [chat.response_ids(tok, r) for _, r in pairs]
    got = hf_backend.sequence_logprobs(prompts, replies)
    for prompt, reply, scored in zip(prompts, replies, got):
        ids = torch.tensor([prompt + reply])
        with torch.inference_mode():
            logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
        expected = [logprobs[len(prompt) + j - 1, token].item() for j, token in enumerate(reply)]
        assert len(scored) == len(reply) and scored == pytest.approx(expected, abs=1e-5)
        assert all(v < 0 for v in scored)


def test_on_the_toy_model_a_spanish_prompt_makes_spanish_responses_more_likely(hf_backend, toy_model):
    """The toy world's system prompt asks for Spanish: its responses gain; an irrelevant prompt's
    do not gain as much (the measure orders prompts the way the world was built)."""
    from inocray.settings import get_setting

    spec = parse_spec(tiny_sweep(model=str(toy_model), eval={"logprob_examples": 16}))
    setting = get_setting("toy")
    engine = SimpleNamespace(response_logprobs=SimpleNamespace(
        remote=lambda chats, responses: SimpleNamespace(result=lambda: hf_backend.sequence_logprobs(
            [chat.render(hf_backend.tokenizer, c) for c in chats],
            [chat.response_ids(hf_backend.tokenizer, r) for r in responses]))))
    texts = {pid: setting.prompts[pid].text for pid in ("es-always", "irr-helpful")}
    got = logprob_elicitation(engine, setting, spec, texts)
    assert got["es-always"].value > got["irr-helpful"].value
    assert got["es-always"].low > 0 and math.isfinite(got["irr-helpful"].value)
