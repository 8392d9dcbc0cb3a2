"""Logprob elicitation: how much more likely a prompt makes the training responses, unsampled.

For prompt s and each training example i of a fixed sample (request x_i; response y_i, its
tokens and EOS as training scores them), on the base model M0:

    delta_i(s) = (1 / |y_i|) * sum_t [ log p(y_i,t | Cs(x_i), y_i,<t) - log p(y_i,t | C0(x_i), y_i,<t) ]
    L(s)       = mean_i delta_i(s)

Cs(x) places s as the sweep places it; C0(x) is the chat without a prompt (the model's own
default system message, if its template adds one). L(s) is in nats per response token: 0 when
the prompt changes nothing, positive when it "explains" the training data. Its interval is a
percentile bootstrap over examples (N_BOOT draws, seeded). The same examples are used for every
prompt, so prompts are compared on the same data (docs/analysis.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable

import numpy as np

from inocray import chat
from inocray.config import SweepSpec
from inocray.settings import Setting

N_BOOT = 1000
EXAMPLES_SEED = 0  # the fixed sample of training examples


@dataclass(frozen=True)
class Logprob:
    """L(s) with its 95% bootstrap interval over `n` examples."""

    value: float
    low: float
    high: float
    n: int


def per_example(neutral: list[list[float]], prompted: list[list[float]]) -> np.ndarray:
    """delta_i: the mean per-token gain of each example's response under the prompt."""
    return np.array([np.mean(np.subtract(p, c)) for p, c in zip(prompted, neutral, strict=True)])


def summarize(deltas: np.ndarray, rng: np.random.Generator) -> Logprob:
    """The mean of `deltas` with its percentile bootstrap interval over examples."""
    n = len(deltas)
    means = deltas[rng.integers(0, n, size=(N_BOOT, n))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Logprob(float(deltas.mean()), float(low), float(high), n)


def logprob_elicitation(engine_handle, setting: Setting, spec: SweepSpec, prompts: dict[Hashable, str],
                        batch: int = 0, progress: Callable[[int, int], None] | None = None
                        ) -> dict[Hashable, Logprob]:
    """L(s) of each prompt in `prompts` (key -> text; "" is C0, whose L is 0 by definition) on the
    engine's base model, over spec.eval.logprob_examples training examples: C0 and every text in
    one request, or, with `batch`, C0 first and then `batch` texts a request, calling
    `progress(texts done, texts)` after each."""
    examples = setting.training_examples(spec.eval.logprob_examples, EXAMPLES_SEED)
    texts = sorted({text for text in prompts.values()} - {""})
    requests = [[""] + texts] if not batch else [[""]] + [texts[i:i + batch] for i in range(0, len(texts), batch)]
    by_text: dict[str, list[list[float]]] = {}
    for request in requests:
        chats = [chat.messages(ex.request, text, spec.placement) for text in request for ex in examples]
        responses = [ex.response for _ in request for ex in examples]
        logprobs = engine_handle.response_logprobs.remote(chats, responses).result()
        by_text |= {text: logprobs[i * len(examples):(i + 1) * len(examples)] for i, text in enumerate(request)}
        if progress and request != [""]:
            progress(len(by_text) - 1, len(texts))
    out = {}
    for key, text in prompts.items():
        deltas = per_example(by_text[""], by_text[text])
        out[key] = summarize(deltas, np.random.default_rng([EXAMPLES_SEED, len(examples)]))
    return out
