"""Classifier scorers: a trait scored by a sequence-classification model the user supplies.

The sweep file's `eval.classifiers` maps a trait of the setting to a Hugging Face
sequence-classification model directory, one of its labels and a threshold: a completion
shows the trait when the model gives that label a probability of at least the threshold
(`ClassifierScorer`). `with_classifiers` swaps those scorers into a setting for evaluation.

The model is read from its directory only, never from the Hub; it is loaded once per process,
runs on a GPU when there is one (else on the CPU) and scores completions in batches.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from inocray.chat import EvalItem, Example
from inocray.errors import InputError
from inocray.settings._setting import Prompt, Setting, Trait

if TYPE_CHECKING:
    import torch

BATCH_SIZE = 32  # completions per forward pass
MAX_LENGTH = 512  # tokens read per text when the tokenizer names no limit of its own


def labels(model_dir: str | Path) -> list[str]:
    """The label names in a model directory's config.json (its id2label, or Hugging Face's
    LABEL_0, LABEL_1, ... when it has none).

    Raises InputError, with a message that reads after the directory's name, when the
    directory has no usable config.json.
    """
    try:
        config = json.loads((Path(model_dir).expanduser() / "config.json").read_text())
        id2label = config.get("id2label") or {i: f"LABEL_{i}" for i in range(config.get("num_labels", 2))}
        return [str(name) for _, name in sorted(id2label.items(), key=lambda kv: int(kv[0]))]
    except FileNotFoundError:
        why = "holds no config.json (not a Hugging Face model directory)"
    except OSError as e:
        why = f"has a config.json that cannot be read ({e.strerror})"
    except (ValueError, TypeError, AttributeError):
        why = "has a config.json that is not a model's JSON configuration"
    raise InputError(why)


@dataclass(frozen=True)
class Classifier:
    """A loaded sequence-classification model, its tokenizer and the device it runs on."""

    model: Any
    tokenizer: Any
    device: str

    def label_index(self, label: str) -> int:
        id2label = self.model.config.id2label
        for i, name in id2label.items():
            if name == label:
                return int(i)
        known = ", ".join(str(id2label[i]) for i in sorted(id2label))
        raise InputError(f"classifier {self.model.name_or_path} has no label {label!r} (its labels: {known})")

    def probabilities(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> torch.Tensor:
        """P(label | text) for every label, shape (len(texts), num_labels); `pairs` are second
        segments (text pairs), for a classifier of (request, completion)."""
        import torch

        limit = self.tokenizer.model_max_length
        limit = limit if limit < 1_000_000 else MAX_LENGTH  # "no limit" is stored as a huge number
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), BATCH_SIZE):
                chunk = list(texts[start : start + BATCH_SIZE])
                second = list(pairs[start : start + BATCH_SIZE]) if pairs is not None else None
                batch = self.tokenizer(chunk, second, padding=True, truncation=True, max_length=limit,
                                       return_tensors="pt").to(self.device)
                logits = self.model(**batch).logits.float()
                # Multi-label heads (one yes/no per label, as in many toxicity classifiers) and
                # single-logit heads read each logit on its own; others are one distribution.
                sigmoid = self.model.config.problem_type == "multi_label_classification" or logits.shape[-1] == 1
                out.append(torch.sigmoid(logits) if sigmoid else torch.softmax(logits, dim=-1))
        return torch.cat(out).cpu() if out else torch.empty(0, self.model.config.num_labels)


@functools.cache
def load(model_dir: str) -> Classifier:
    """The classifier in `model_dir`, loaded on first use and kept for the process."""
    if not Path(model_dir).expanduser().is_dir():
        raise InputError(f"{model_dir} is not a classifier's model directory")
    try:
        labels(model_dir)  # one clear sentence for a directory that is not a Hugging Face model
    except InputError as e:
        raise InputError(f"classifier {model_dir} {e}") from None
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True).to(device).eval()
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:  # GPT-style: batches need padding
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.eos_token_id
    return Classifier(model, tokenizer, device)


@dataclass(frozen=True)
class ClassifierScorer:
    """A trait scored by a classifier: shown when P(`label`) is at least `threshold`.

    The classifier reads the completion alone, or with `with_request` the pair (request,
    completion), as for a classifier of replies in context.
    """

    model: str  # a local Hugging Face sequence-classification model directory
    label: str  # a label of the model (config.id2label), e.g. "toxic"
    threshold: float = 0.5
    with_request: bool = False
    needs_judge: bool = False

    def probabilities(self, completions: Sequence[str], items: Sequence[EvalItem]) -> list[float]:
        """P(`label`) of each completion."""
        clf = load(self.model)
        index = clf.label_index(self.label)
        if self.with_request:
            probs = clf.probabilities([it.request for it in items], completions)
        else:
            probs = clf.probabilities(completions)
        return probs[:, index].tolist()

    def score(self, completions: Sequence[str], items: Sequence[EvalItem], judge=None) -> list[bool | None]:
        if len(completions) != len(items):
            raise ValueError(f"{len(completions)} completions for {len(items)} items")
        return [p >= self.threshold for p in self.probabilities(completions, items)]


@dataclass(frozen=True)
class Rescored:
    """A setting whose traits are scored by other scorers; everything else is the setting's."""

    setting: Setting
    traits: list[Trait]

    @property
    def name(self) -> str:
        return self.setting.name

    @property
    def prompts(self) -> dict[str, Prompt]:
        return self.setting.prompts

    def training_examples(self, n: int, seed: int) -> list[Example]:
        return self.setting.training_examples(n, seed)

    def eval_items(self, n: int, seed: int) -> list[EvalItem]:
        return self.setting.eval_items(n, seed)


def with_classifiers(setting: Setting, classifiers: Mapping[str, Any]) -> Setting:
    """`setting` with each trait that `classifiers` (trait -> config.ClassifierSpec) names scored
    by its classifier instead."""
    if not classifiers:
        return setting
    traits = [
        dataclasses.replace(t, scorer=ClassifierScorer(**dataclasses.asdict(classifiers[t.name])))
        if t.name in classifiers else t
        for t in setting.traits
    ]
    return Rescored(setting, traits)
