"""Screen candidate prompts: measure their elicitation on the base model and rank them.

    screen(spec, candidates, predict_from=RUN_DIR)
      base model   -> models.resolve: the toy world's (cached) or the user's model directory
      Serve app    -> one engine (evaluation.serve) for the base model; no training at all
      elicitation  -> T(M0, Cs) of every candidate s and T(M0, C0), in batches, with progress
      prediction   -> with a finished run: T(Ms, C0) = intercept + slope * T(M0, Cs) from its
                      fitted elicitation line (raw scale), with the line's 95% band

This is the papers' selection heuristic as a tool: prompts that elicit a trait more strongly
in the untrained model inoculate against it better (Wichers et al.), so the candidates at the
top of the ranking are the ones worth training with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa

from inocray import models
from inocray.analysis import NO_PROMPT, ElicitationLine, fit_rows, read_runs
from inocray.config import SweepSpec, make_plan
from inocray.errors import InputError
from inocray.evaluation import chat_sizes, logprob_elicitation, sample_contexts, serve
from inocray.results import SCREEN, default_screen_dir, record_path, storage, sweep_record, write_atomically
from inocray.run._candidates import Candidate
from inocray.settings import Setting, get_setting, use_isolation

BATCH = 25  # candidates per request to the engine: one progress line each
MEASURES = ("sampled", "logprob", "both")  # how elicitation is measured (docs/screening.md)
NEUTRAL = ""  # key of the neutral context C0 among the candidate ids (no id is empty)

# One row per (candidate, trait), ranked within each trait by elicitation, highest first.
SCHEMA = pa.schema(
    [
        ("rank", pa.int64()),  # 1 = the strongest elicitation of this trait
        ("id", pa.string()),
        ("text", pa.string()),
        ("trait", pa.string()),
        ("desired", pa.bool_()),  # False: the trait to inoculate against
        ("elicitation", pa.float64()),  # T(M0, Cs): trait rate of the base model under the candidate
        ("n", pa.int64()),  # samples behind the rate
        ("neutral_rate", pa.float64()),  # T(M0, C0): the base model without any prompt
        # L(s): the training responses' mean per-token log-probability gain under the candidate
        # (evaluation.logprob_elicitation), with its 95% interval; null unless measured
        ("logprob", pa.float64()),
        ("logprob_low", pa.float64()),
        ("logprob_high", pa.float64()),
        ("predicted_neutral", pa.float64()),  # T(Ms, C0) on the run's line; null without --from
        ("predicted_low", pa.float64()),  # the line's pointwise 95% bootstrap band
        ("predicted_high", pa.float64()),
        ("extrapolated", pa.bool_()),  # elicitation outside the range the line was fit on
    ]
)


def screen(
    spec: SweepSpec,
    candidates: Sequence[Candidate],
    predict_from: str | Path | None = None,
    *,
    cell: str | None = None,
    address: str | None = None,
    batch_size: int = BATCH,
    measure: str = "sampled",
    echo: Callable = print,
) -> pa.Table:
    """Rank `candidates` by the elicitation of each trait on the base model `spec` names.

    Args:
        spec: the sweep: its setting, base model, placement, evaluation and engine settings.
        candidates: the prompts to measure (see inocray.run._candidates.read_candidates).
        predict_from: a finished run directory of the same setting; its fitted line predicts
            each candidate's T(Ms, C0) for every undesired trait.
        cell: the grid cell of `predict_from` whose line predicts, where it holds several.
        address: a running Ray cluster; by default a local Ray (or the session already open).
        batch_size: candidates per request to the engine.
        measure: "sampled" (trait rates of sampled completions), "logprob" (the training
            responses' log-probability gain, spec.eval.logprob_examples of them), or "both";
            with "logprob" alone the candidates are ranked by it and nothing is predicted.
        echo: where progress lines go.

    Returns:
        A table of SCHEMA: one row per (candidate, trait), undesired traits first.

    Raises:
        InputError: no candidates, a repeated id, a candidate too long for the engine, or a run directory
            that cannot predict (another setting, several grid cells and no `cell`, or no fitted line);
            raised before measuring.
    """
    if measure not in MEASURES:
        raise InputError(f"unknown measure {measure!r}; use {', '.join(MEASURES)}")
    if measure != "sampled" and spec.eval.logprob_examples == 0:
        raise InputError(f"--measure {measure} needs eval.logprob_examples above 0 in the sweep file")
    if measure == "logprob" and predict_from is not None:
        raise InputError("--from predicts from sampled elicitation: use --measure sampled or both with it")
    if not candidates:
        raise InputError("there are no candidate prompts to screen")
    if len({c.id for c in candidates}) < len(candidates):
        raise InputError("two candidate prompts share an id; ids must be unique")
    use_isolation(spec.sandbox.isolation)
    setting = get_setting(spec.setting, spec.data)
    lines = _fitted_lines(Path(predict_from), spec, setting, echo, cell) if predict_from is not None else {}
    model_path = models.resolve(spec.model, echo)
    _check_prompts(model_path, spec, setting, candidates, echo)
    app = f"inocray-screen-{spec.hash()}"  # not the sweep's app: a running sweep keeps its engine
    replica = make_plan(spec).placement.replica
    with serve.session(app, model_path, spec.engine, replica, address, echo, judge_model=spec.eval.judge_model,
                       alone=True) as engine:
        judge = serve.judge(app, spec.eval.judge_model)
        rates, neutral = ({}, {}) if measure == "logprob" else _measure(engine, spec, setting, candidates, batch_size,
                                                                        echo, judge)
        logprobs = _measure_logprob(engine, spec, setting, candidates, batch_size, echo) if measure != "sampled" else {}
    return _ranked(setting, candidates, rates, neutral, lines, logprobs)


@dataclass(frozen=True)
class _Line:
    """A run's fitted elicitation line for one trait, and the elicitation range it was fit on."""

    line: ElicitationLine
    low: float
    high: float

    def predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        band_low, band_high = self.line.band(x)
        return {
            "predicted_neutral": self.line.intercept.value + self.line.slope.value * x,
            "predicted_low": band_low,
            "predicted_high": band_high,
            "extrapolated": (x < self.low) | (x > self.high),
        }


def _fitted_lines(run_dir: Path, spec: SweepSpec, setting: Setting, echo: Callable,
                  cell: str | None = None) -> dict[str, _Line]:
    """The raw-scale elicitation line of each undesired trait of the run in `run_dir` (of its
    grid cell `cell`, which a run of several cells of this setting needs)."""
    import pyarrow.compute as pc

    rows = read_runs([run_dir])
    found = sorted(set(rows.column("setting").to_pylist()))
    if spec.setting not in found:
        raise InputError(
            f"{run_dir} holds results of setting {', '.join(found)}, not of this sweep's setting {spec.setting!r}"
        )
    rows = rows.filter(pc.equal(rows["setting"], spec.setting))
    cells = sorted(set(rows.column("cell").to_pylist()) - {""}) or [""]  # base and data rows: no cell
    if cell is None and len(cells) > 1:
        raise InputError(f"{run_dir} is a grid of {len(cells)} cells of setting {spec.setting} "
                         f"({', '.join(cells)}); choose the one to predict from with --cell")
    if cell is not None and cell not in cells:
        raise InputError(f"{run_dir} has no grid cell {cell!r} of setting {spec.setting}; "
                         f"its cells: {', '.join(c or '(none: not a grid)' for c in cells)}")
    cell = cells[0] if cell is None else cell
    _note_differences(run_dir, spec, echo)
    try:
        fit = fit_rows(rows, scale="raw")
    except InputError as e:
        raise InputError(f"{run_dir} cannot be fit: {e}") from None
    where = f"{run_dir} (cell {cell})" if cell else str(run_dir)
    lines = {}
    for trait in (t for t in setting.traits if not t.desired):
        tf = next((t for t in fit.traits if t.trait == trait.name and t.cell == cell), None)
        if tf is None or tf.line is None:
            why = "; ".join(tf.notes) if tf is not None else "the run has no rows of it"
            echo(f"no prediction for {trait.name}: {why}")
            continue
        xs = [p.elicitation.value for p in tf.prompts if p.prompt_id != NO_PROMPT]
        lines[trait.name] = _Line(tf.line, min(xs), max(xs))
        echo(
            f"predicting {trait.name} from {where}: T(Ms, C0) = {tf.line.intercept.value:.3f} "
            f"{tf.line.slope.value:+.3f} * T(M0, Cs), fit on elicitation {min(xs):.2f} to {max(xs):.2f} "
            f"({tf.line.n_prompts} prompts)"
        )
    if not lines:
        names = ", ".join(t.name for t in setting.traits if not t.desired) or "any trait"
        raise InputError(f"{run_dir} has no fitted elicitation line for {names}: nothing to predict from")
    return lines


def _note_differences(run_dir: Path, spec: SweepSpec, echo: Callable) -> None:
    """Say where the run measured elicitation differently from this screen."""
    if not Path(record_path(run_dir)).is_file():
        return
    theirs = sweep_record(run_dir)["spec"]
    ours = dataclasses.asdict(spec)
    for key in ("model", "placement", "eval"):
        if key in theirs and theirs[key] != ours[key]:
            echo(f"note: {run_dir} used {key} {theirs[key]!r}, this screen {ours[key]!r}; its line may not carry over")


def _check_prompts(
    model_path: str, spec: SweepSpec, setting: Setting, candidates: Sequence[Candidate], echo: Callable
) -> None:
    """InputError for a candidate the engine cannot take; a note on words the model does not know."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    sizes = chat_sizes(tok, spec, setting, {c.id: c.text for c in candidates})
    room = spec.engine.max_model_len - spec.eval.max_tokens
    unknown = []
    for c in candidates:
        if sizes[c.id] > room:
            raise InputError(
                f"candidate {c.id} (line {c.line}) is too long: {sizes[c.id]} tokens with the longest request, "
                f"and engine.max_model_len {spec.engine.max_model_len} leaves {room} beside eval.max_tokens"
            )
        if tok.unk_token_id is not None and tok.unk_token_id in tok(c.text, add_special_tokens=False)["input_ids"]:
            unknown.append(c.id)
    if unknown:
        echo(f"note: {len(unknown)} candidate(s) hold words the model reads as {tok.unk_token}: {_some(unknown)}")


def _measure(
    engine, spec: SweepSpec, setting: Setting, candidates: Sequence[Candidate], batch_size: int, echo: Callable,
    judge=None,
) -> tuple[dict, dict]:
    """Trait rates of every candidate and of the neutral context, one request per batch."""
    total = len(candidates)
    echo(
        f"measuring the elicitation of {total} candidates on the base model: {batch_size} per request, "
        f"{spec.eval.requests} requests x {spec.eval.samples} samples each"
    )
    undesired = [t.name for t in setting.traits if not t.desired]
    started = time.monotonic()
    rates: dict[str, dict[str, tuple[float, int]]] = {}
    neutral = None
    for b, start in enumerate(range(0, total, batch_size)):
        prompts = {c.id: c.text for c in candidates[start : start + batch_size]}
        if neutral is None:
            prompts[NEUTRAL] = ""
        # Each batch samples with its own seed, so no two batches share a random stream.
        got = sample_contexts(engine, setting, spec, prompts, seed=b, judge=judge)
        neutral = got.pop(NEUTRAL, neutral)
        rates |= got
        elapsed = time.monotonic() - started
        left = elapsed / len(rates) * (total - len(rates))
        strongest = [max(rates, key=lambda i: rates[i][t][0]) for t in undesired]
        leaders = "  ".join(f"{t} {i} {rates[i][t][0]:.2f}" for t, i in zip(undesired, strongest))
        echo(
            f"[{len(rates):>{len(str(total))}}/{total}] elapsed {_clock(elapsed)}, ~{_clock(left)} left"
            + (f"; strongest so far: {leaders}" if leaders else "")
        )
    return rates, neutral


def _measure_logprob(engine, spec: SweepSpec, setting: Setting, candidates: Sequence[Candidate],
                     batch_size: int, echo: Callable) -> dict:
    """The logprob elicitation of every candidate, `batch_size` candidates a request (C0 once)."""
    echo(f"measuring the logprob elicitation of {len(candidates)} candidates on the base model: "
         f"{spec.eval.logprob_examples} training examples each")
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        elapsed = time.monotonic() - started
        echo(f"[{done:>{len(str(total))}}/{total}] logprob: elapsed {_clock(elapsed)}, "
             f"~{_clock(elapsed / done * (total - done))} left")

    got = logprob_elicitation(engine, setting, spec, {c.id: c.text for c in candidates}, batch_size, progress)
    echo(f"logprob elicitation measured in {_clock(time.monotonic() - started)}")
    return got


def _ranked(setting: Setting, candidates: Sequence[Candidate], rates: dict, neutral: dict, lines: dict[str, _Line],
            logprobs: dict) -> pa.Table:
    """The table of SCHEMA: for each trait, the candidates by elicitation (or, measured alone, by
    logprob elicitation), highest first."""
    rows = []
    for trait in sorted(setting.traits, key=lambda t: t.desired):  # undesired first
        # A stable sort: candidates that tie keep their order in the file.
        if rates:
            order = sorted(candidates, key=lambda c: -rates[c.id][trait.name][0])
        else:
            order = sorted(candidates, key=lambda c: -logprobs[c.id].value)
        x = np.array([rates[c.id][trait.name][0] for c in order]) if rates else None
        predicted = lines[trait.name].predict(x) if trait.name in lines else {}
        for i, c in enumerate(order):
            lp = logprobs.get(c.id)
            rows.append(
                {
                    "rank": i + 1, "id": c.id, "text": c.text, "trait": trait.name, "desired": trait.desired,
                    "elicitation": rates[c.id][trait.name][0] if rates else None,
                    "n": rates[c.id][trait.name][1] if rates else None,
                    "neutral_rate": neutral[trait.name][0] if rates else None,
                    "logprob": lp.value if lp else None, "logprob_low": lp.low if lp else None,
                    "logprob_high": lp.high if lp else None,
                    **{k: v[i].item() for k, v in predicted.items()},
                }
            )
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def screen_text(table: pa.Table, top: int = 20) -> str:
    """The top `top` candidates of each undesired trait (or each trait, if none is), as a table."""
    rows = table.to_pylist()
    traits = list(dict.fromkeys(r["trait"] for r in rows))
    ranked = list(dict.fromkeys(r["trait"] for r in rows if not r["desired"])) or traits
    sampled = rows[0]["elicitation"] is not None
    rate = {(r["id"], r["trait"]): r["elicitation"] for r in rows}
    logprob = {r["id"]: r["logprob"] for r in rows if r["logprob"] is not None}
    total = len(rows) // len(traits)
    width = max([10, *(len(r["id"]) for r in rows)])  # the id column fits the longest id
    out = []
    for trait in ranked:
        mine = [r for r in rows if r["trait"] == trait]
        predicts = mine[0]["predicted_neutral"] is not None
        if sampled:
            out.append(f"{trait}: {total} candidates ranked by elicitation T(M0, Cs); no prompt T(M0, C0) = "
                       f"{mine[0]['neutral_rate']:.2f}; {mine[0]['n']} samples each")
        else:
            out.append(f"{trait}: {total} candidates ranked by logprob elicitation L(s) (nats per response token)")
        head = f"{'rank':>5}  {'id':<{width}} " + (" ".join(f"{t[:8]:>8}" for t in traits) if sampled else "")
        head += f" {'logprob':>8}" if logprob else ""
        out.append(head + ("  predicted T(Ms,C0) [95%]" if predicts else "") + "  text")
        for r in mine[:top]:
            line = f"{r['rank']:>5}  {r['id']:<{width}} "
            line += " ".join(f"{rate[(r['id'], t)]:>8.2f}" for t in traits) if sampled else ""
            line += f" {logprob[r['id']]:>+8.3f}" if logprob else ""
            if predicts:
                band = f"{r['predicted_neutral']:.2f} [{r['predicted_low']:.2f}, {r['predicted_high']:.2f}]"
                line += f"  {band:<22}{'*' if r['extrapolated'] else ' '} "
            out.append(f"{line}  {_short(r['text'])}")
        if len(mine) > top:
            out.append(f"  ... top {top} of {len(mine)} shown")
        outside = [r["id"] for r in mine if r["extrapolated"]]
        if outside:
            out.append(
                f"  * outside the elicitation range the line was fit on, so the prediction extrapolates: "
                f"{len(outside)} of {len(mine)} ({_some(outside)})"
            )
        out.append("")
    return "\n".join(out)


def default_out_dir(spec: SweepSpec, candidates: Sequence[Candidate], predict_from: str | Path | None = None,
                    cell: str | None = None) -> Path:
    """RUNS_ROOT/screen-NAME-DIGEST, the digest naming the sweep, the candidates and the run (and
    its cell) predicted from."""
    source = str(storage.resolve(predict_from)) if predict_from is not None else None
    if cell:
        source = f"{source}#{cell}"
    blob = json.dumps([spec.hash(), [(c.id, c.text) for c in candidates], source]).encode()
    return default_screen_dir(spec.name, hashlib.sha256(blob).hexdigest()[:10])


def save_screen(table: pa.Table, out_dir: str | Path) -> tuple[Path, Path]:
    """Write the table as SCREEN.parquet and SCREEN.csv in `out_dir`, each atomically."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq


    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return (
        write_atomically(out_dir / f"{SCREEN}.parquet", lambda tmp: pq.write_table(table, tmp)),
        write_atomically(out_dir / f"{SCREEN}.csv", lambda tmp: pa_csv.write_csv(table, tmp)),
    )


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _some(ids: list[str], most: int = 12) -> str:
    return ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")
