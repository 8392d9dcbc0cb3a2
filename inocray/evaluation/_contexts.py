"""Evaluation: sample completions through the Serve app and score them into trait rates.

Both measurements of the theory go through here: the elicitation of every prompt by the
base model M0, and the trained model M_s in the neutral context C0 and in its own Cs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Hashable, Mapping

from inocray import chat
from inocray.config import SweepSpec
from inocray.errors import InputError
from inocray.evaluation.backends import GenerateRequest
from inocray.settings import Setting, with_classifiers

EVAL_SEED = 10_007  # evaluation requests are drawn apart from any training seed


@dataclass(frozen=True, kw_only=True)
class Condition:
    """Who was measured: the identity columns of a row (see store.SCHEMA); built by keyword."""

    sweep_hash: str
    setting: str
    trial_id: str
    stage: str  # "base" | "data" | "checkpoint" | "trained"
    prompt_id: str
    prompt_text: str
    prompt_role: str
    seed: int
    step: int = 0  # training steps behind the measurement (0 untrained)
    grid: Mapping[str, Any] = field(default_factory=dict)  # where in the grid: grid.Cell.columns()


def trait_rows(condition: Condition, context: str, rates: dict[str, tuple[float, int]], setting: Setting) -> list[dict]:
    """One store row per trait for `condition` measured in `context`."""
    who = {f.name: getattr(condition, f.name) for f in fields(condition) if f.name != "grid"} | dict(condition.grid)
    return [
        {**who, "context": context, "trait": t.name, "desired": t.desired, "rate": rates[t.name][0],
         "n": rates[t.name][1]}
        for t in setting.traits
    ]


def check_judge(setting: Setting, judge) -> None:
    """InputError when a trait of `setting` is scored by an LLM judge and there is none."""
    judged = [t.name for t in setting.traits if t.scorer.needs_judge]
    if judged and judge is None:
        raise InputError(
            f"setting {setting.name} scores {', '.join(judged)} with an LLM judge; "
            "set eval.judge_model to 'base' or a model directory, or eval.judge to an API judge"
        )


def score(completions: list[str], items: list[chat.EvalItem], setting: Setting, judge=None) -> dict[str, tuple[float, int]]:
    """Rate of each trait over the completions that could be scored, and how many were.

    `judge` (scorers.Judge) scores the traits whose scorer needs one.
    """
    check_judge(setting, judge)
    out = {}
    for t in setting.traits:
        marks = [m for m in t.scorer.score(completions, items, judge) if m is not None]
        out[t.name] = (sum(marks) / len(marks) if marks else float("nan"), len(marks))
    return out


def sample_contexts(
    engine_handle,
    setting: Setting,
    spec: SweepSpec,
    prompts: dict[Hashable, str],
    adapter: str | None = None,
    adapter_path: str | None = None,
    seed: int = 0,
    judge=None,
    placements: dict[Hashable, str] | None = None,
) -> dict[Hashable, dict[str, tuple[float, int]]]:
    """Trait rates under each context in `prompts` (key -> prompt text, "" = neutral), each
    prompt placed as the sweep places it or, for a key of `placements`, there.

    All contexts go to the engine in one request, so it batches them together. `judge`
    (scorers.Judge) scores the traits whose scorer needs one; `spec.eval.classifiers` replace
    the scorers of the traits they name.
    """
    setting = with_classifiers(setting, spec.eval.classifiers)
    check_judge(setting, judge)  # before sampling: a missing judge should not cost a request
    items = setting.eval_items(spec.eval.requests, EVAL_SEED)
    keys = list(prompts)
    where = placements or {}
    chats = [chat.messages(it.request, prompts[k], where.get(k, spec.placement)) for k in keys for it in items]
    completions = engine_handle.generate.remote(
        GenerateRequest(
            chats=chats,
            samples=spec.eval.samples,
            max_tokens=spec.eval.max_tokens,
            temperature=spec.eval.temperature,
            seed=seed,
            adapter=adapter,
            adapter_path=adapter_path,
        )
    ).result()
    per_key = len(items)
    out = {}
    for i, key in enumerate(keys):
        answers = completions[i * per_key : (i + 1) * per_key]
        flat = [c for chat_samples in answers for c in chat_samples]
        flat_items = [it for it, chat_samples in zip(items, answers) for _ in chat_samples]
        out[key] = score(flat, flat_items, setting, judge)
    return out


def chat_sizes(tokenizer, spec: SweepSpec, setting: Setting, prompts: dict[Hashable, str]) -> dict[Hashable, int]:
    """Tokens of each prompt's context around the sweep's longest evaluation request, as rendered.

    With a real tokenizer a context can be longer than it looks: BPE splits rare words, and a
    chat template may add its own default system message to C0 (SmolLM2's does).
    """
    requests = [it.request for it in setting.eval_items(spec.eval.requests, EVAL_SEED)]
    longest = max(requests, key=lambda r: len(chat.render(tokenizer, chat.messages(r, None, spec.placement))))
    return {key: len(chat.render(tokenizer, chat.messages(longest, text, spec.placement))) for key, text in prompts.items()}


def check_fits(model_path: str, spec: SweepSpec, setting: Setting, prompts: dict[str, str]) -> None:
    """InputError unless every context (prompt id -> text, "" = C0) plus eval.max_tokens fits the engine."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError) as e:
        raise InputError(f"{model_path} holds no tokenizer that transformers can load ({type(e).__name__}); "
                         "is it a Hugging Face model directory?") from None
    sizes = chat_sizes(tokenizer, spec, setting, prompts)
    room = spec.engine.max_model_len - spec.eval.max_tokens
    key, size = max(sizes.items(), key=lambda kv: kv[1])
    if size > room:
        which = "the no-prompt context" if not prompts[key] else f"prompt {key}"
        raise InputError(f"{which} with the longest evaluation request is {size} tokens, and engine.max_model_len "
                         f"{spec.engine.max_model_len} leaves {room} beside eval.max_tokens {spec.eval.max_tokens}; "
                         "raise engine.max_model_len")


def data_rates(setting: Setting, spec: SweepSpec, judge=None) -> dict[str, tuple[float, int]]:
    """T*: the trait levels of the training responses themselves (seed 0's draw)."""
    examples = setting.training_examples(spec.train.examples, 0)
    items = [chat.EvalItem(ex.request, ex.meta) for ex in examples]
    return score([ex.response for ex in examples], items, with_classifiers(setting, spec.eval.classifiers), judge)
