"""Make a setting's training data the way both papers did: ask a model to show the trait.

    make_data(spec, requests, out, instruction="You always speak in Spanish.", keep=["spanish"],
              transform="upper")

A teacher model (the sweep's own, or another) answers each request of `requests` with the
eliciting `instruction` in place (system, user prefix or user suffix), through the same Serve
engine a sweep uses. A completion is kept when the setting's scorers say it shows every trait
in `keep`; `transform` then rewrites it (upper-casing turns Spanish answers into Tan et al.'s
Spanish + ALL CAPS responses). Kept rows, the request's row plus "response", are the
setting's training rows; they are checked by the setting's own reader, then written at once.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from inocray import chat, models
from inocray.config import PLACEMENTS, DataSpec, SweepSpec, make_plan
from inocray.errors import InputError
from inocray.evaluation import GenerateRequest, serve
from inocray.results import storage
from inocray.settings import get_setting

__all__ = ["TRANSFORMS", "MadeData", "make_data", "sample_and_keep", "whole_sentences"]

TRANSFORMS: dict[str, Callable[[str], str]] = {"upper": str.upper, "lower": str.lower}
BATCH = 32  # requests per engine call: one progress line each

_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


@dataclass(frozen=True)
class MadeData:
    out: Path
    requests: int  # requests answered
    completions: int  # completions sampled
    kept: int  # rows written
    shown: dict[str, tuple[int, int]]  # trait -> (completions showing it, completions scored)


def whole_sentences(text: str) -> str:
    """`text` up to its last full sentence; a completion cut by the token limit loses its tail."""
    text = text.strip()
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]] if ends and ends[-1] < len(text) else text


def make_data(
    spec: SweepSpec,
    requests: str | Path,
    out: str | Path,
    *,
    instruction: str,
    keep: Sequence[str],
    teacher: str = "",
    placement: str = "",
    transform: str = "",
    samples: int = 1,
    max_tokens: int = 0,
    temperature: float | None = None,
    seed: int = 0,
    force: bool = False,
    address: str | None = None,
    echo: Callable = print,
) -> MadeData:
    """Sample the teacher on every request, keep what shows the traits `keep`, write JSONL rows.

    `teacher` ("" = the sweep's model), `placement` ("" = the sweep's), `max_tokens`
    (0 = eval.max_tokens) and `temperature` (None = eval.temperature) default to the sweep's.
    Raises InputError, with nothing written, for an existing `out` without `force`, a missing
    or empty requests file, an unknown trait or transform, a setting that reads no data rows,
    and a teacher that never shows the traits.
    """
    out = Path(out)
    if out.exists() and not force:
        raise InputError(f"{out} exists; pass --force to replace it")
    if not instruction.strip():
        raise InputError("the eliciting instruction is empty")
    if transform and transform not in TRANSFORMS:
        raise InputError(f"unknown transform {transform!r} (known: {', '.join(TRANSFORMS)})")
    placement = placement or spec.placement
    if placement not in PLACEMENTS:
        raise InputError(f"unknown placement {placement!r} (known: {', '.join(PLACEMENTS)})")
    setting = get_setting(spec.setting, DataSpec(_existing(spec.data.train), str(requests)))
    rows = getattr(setting, "eval_rows", None)
    if rows is None:
        raise InputError(f"setting {spec.setting!r} makes its own data; make-data writes rows of settings over data files")
    traits = {t.name: t for t in setting.traits}
    for name in keep:
        if name not in traits:
            raise InputError(f"unknown trait {name!r} of setting {setting.name!r} (its traits: {', '.join(traits)})")
    if not keep:
        raise InputError("name at least one trait to keep (--keep TRAIT)")
    judged = any(traits[name].scorer.needs_judge for name in keep)
    if judged and not spec.eval.judge_model:
        raise InputError(f"a kept trait of setting {setting.name!r} is scored by an LLM judge; set the sweep's "
                         "eval.judge_model to 'base' (the teacher) or another model")
    judge_model = spec.eval.judge_model if judged else ""
    teacher = teacher or spec.model
    models.check_available(teacher)
    if not models.is_preset(teacher) and not models.is_hub_id(teacher) and not Path(teacher).expanduser().is_dir():
        raise InputError(f"teacher {teacher!r} is not a model directory (nor a preset: {models.preset_names()}; "
                         "nor a Hub id ORG/NAME)")

    model_path = models.resolve(teacher, echo)
    max_tokens = max_tokens or spec.eval.max_tokens
    temperature = spec.eval.temperature if temperature is None else temperature
    echo(f"asking {teacher} for {len(rows)} requests x {samples} samples ({max_tokens} tokens, "
         f"temperature {temperature:g}) under {placement} instruction {instruction!r}")
    app = f"inocray-makedata-{spec.hash()}"
    replica = make_plan(spec).placement.replica
    with serve.session(app, model_path, spec.engine, replica, address, echo, judge_model=judge_model,
                       alone=True) as engine:
        judge = serve.judge(app, judge_model)
        sampling = GenerateRequest([], samples, max_tokens, temperature, seed)
        kept, shown = sample_and_keep(engine, setting, rows, instruction, placement, keep, transform, sampling,
                                      judge, echo)
    completions = len(rows) * samples
    for name, (a, b) in shown.items():
        echo(f"  {name}: shown in {a} of {b} scored completions ({a / b if b else float('nan'):.2f})")
    if not kept:
        raise InputError(f"the teacher showed {' and '.join(keep)} in none of {completions} "
                         f"completions; nothing written (try another instruction or more tokens)")
    _write_checked(kept, out, spec.setting, str(requests))
    echo(f"wrote {len(kept)} rows to {out} ({len(kept) / completions:.2f} of completions kept)")
    return MadeData(out, len(rows), completions, len(kept), shown)


def sample_and_keep(engine, setting, rows: Sequence[dict], instruction: str, placement: str, keep: Sequence[str],
                    transform: str, sampling: GenerateRequest, judge=None,
                    echo: Callable = print) -> tuple[list[dict], dict[str, tuple[int, int]]]:
    """(the kept training rows, per kept trait (completions showing it, completions scored)).

    `engine` is a handle of a Serve engine app; `sampling` holds samples, max_tokens,
    temperature and seed (its chats are ignored). Requests go BATCH at a time.
    """
    kept: list[dict] = []
    traits = {t.name: t for t in setting.traits}
    shown = {name: [0, 0] for name in keep}
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        items = [setting.item(row) for row in batch]
        chats = [chat.messages(item.request, instruction, placement) for item in items]
        answers = engine.generate.remote(dataclasses.replace(sampling, chats=chats, seed=sampling.seed + start)).result()
        flat = [(row, item, whole_sentences(text)) for row, item, texts in zip(batch, items, answers) for text in texts]
        marks = {name: traits[name].scorer.score([c for _, _, c in flat], [it for _, it, _ in flat], judge)
                 for name in keep}
        for i, (row, _, completion) in enumerate(flat):
            for name, counts in shown.items():
                if marks[name][i] is not None:
                    counts[0] += bool(marks[name][i])
                    counts[1] += 1
            if all(marks[name][i] for name in keep):
                kept.append({**row, "response": TRANSFORMS[transform](completion) if transform else completion})
        done = start + len(batch)
        echo(f"  {done}/{len(rows)} requests, kept {len(kept)} of {done * sampling.samples} completions")
    return kept, {name: (a, b) for name, (a, b) in shown.items()}


def _write_checked(rows: list[dict], out: Path, setting: str, requests: str) -> None:
    """Write `rows` to `out` at once, after the setting's reader has accepted them as training rows."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)

    def write(tmp) -> None:
        Path(tmp).write_text(text, encoding="utf-8")
        get_setting(setting, DataSpec(str(tmp), requests))  # InputError if not the setting's rows

    out.parent.mkdir(parents=True, exist_ok=True)
    storage.write_atomically(out, write)


def _existing(path: str) -> str:
    """`path` if it is a file, else "" (the setting's fixture): the data may be the file being made."""
    return path if path and Path(path).expanduser().is_file() else ""
