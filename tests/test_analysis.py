"""The aggregator: known answers from simulated App. H sweeps, degenerate input, the CLI."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from inocray.results import _rows as store
from inocray.analysis import fit_rows, on_scale
from inocray.analysis._data import gather
from inocray.analysis._linearity import lack_of_fit
from inocray.analysis.simulate import PlantedTrait, simulate_rows, write_run
from inocray.cli.analyze import command as analyze
from inocray.cli.report import command as report
from inocray.errors import InputError
from inocray.results import SCHEMA

N_BOOT = 200
K = 0.6
LADDER = {f"ip{i}": 0.1 + 0.12 * i for i in range(6)}  # elicitation T(M0, Cs) of each prompt
PROMPTS = {name: "inoculation" for name in LADDER} | {"irrelevant": "irrelevant"}
SPANISH = PlantedTrait("spanish", k=K, base_neutral=0.05, data_level=0.95, elicitation=LADDER)
# The prompts do not elicit caps and training generalizes it fully (k = 1): IP keeps it.
CAPS = PlantedTrait("caps", k=1.0, base_neutral=0.05, data_level=0.9, desired=True)


def sweep(traits=(SPANISH, CAPS), prompts=PROMPTS, **kw) -> pa.Table:
    kw = {"seeds": 4, "n": 400, "rng": 0} | kw
    return simulate_rows(list(traits), prompts, **kw)


def drop(table: pa.Table, **where) -> pa.Table:
    """The rows of `table` except those matching every column == value in `where`."""
    mask = pa.array([True] * table.num_rows)
    for column, value in where.items():
        mask = pc.and_(mask, pc.equal(table[column], value))
    return table.filter(pc.invert(mask))


def renamed(table: pa.Table) -> pa.Table:
    """The same rows with another text behind prompt ip0."""
    texts = pc.replace_substring(table["prompt_text"], "show ip0", "show ip0 twice")
    return table.set_column(table.schema.get_field_index("prompt_text"), "prompt_text", texts)


@pytest.fixture(scope="module")
def precise():
    """A large sweep whose estimates should sit within 0.05 of the planted values."""
    rows = sweep(seeds=6, n=2000, rng=1)
    return fit_rows(rows, scale="raw", n_boot=N_BOOT)


def test_raw_scale_recovers_planted_line_and_k(precise):
    spanish = precise.trait("spanish")
    assert spanish.line.slope.value == pytest.approx(-K, abs=0.05)
    assert spanish.line.intercept.value == pytest.approx(0.05 + K * 0.95, abs=0.05)
    assert spanish.line.pearson_r.value < -0.95
    assert spanish.pooled_k.through_origin.value == pytest.approx(K, abs=0.05)
    assert spanish.pooled_k.from_line.value == pytest.approx(K, abs=0.05)
    assert spanish.pooled_k.agree
    ks = [p.generalization_factor for p in spanish.prompts[1:]]  # the control has no k
    assert np.median([k.value for k in ks]) == pytest.approx(K, abs=0.05)
    for p in spanish.prompts[1:]:
        # k is a ratio: precise where training moved the trait a lot in the prompt's context
        if p.delta_context.value > 0.4:
            assert p.generalization_factor.value == pytest.approx(K, abs=0.05), p.prompt_id


def test_effects_against_the_control_and_selectivity(precise):
    spanish, caps = precise.trait("spanish"), precise.trait("caps")
    for p in spanish.prompts[1:]:
        planted = SPANISH.level("effect", p.prompt_id, "raw")
        assert p.inoculation_effect.value == pytest.approx(planted, abs=0.05), p.prompt_id
    for p in caps.prompts[1:]:  # the desired trait is kept: no effect
        assert p.inoculation_effect.value == pytest.approx(0.0, abs=0.05), p.prompt_id


def test_logit_scale_recovers_a_line_planted_on_logits():
    rows = sweep(traits=[SPANISH], seeds=6, n=2000, scale="logit", seed_sd=0.1, rng=2)
    spanish = fit_rows(rows, scale="logit", n_boot=N_BOOT).trait("spanish")
    assert spanish.scale == "logit"
    assert spanish.line.slope.value == pytest.approx(-K, abs=0.05)
    assert spanish.pooled_k.through_origin.value == pytest.approx(K, abs=0.05)


def test_both_scales_and_the_logit_smoothing():
    fit = fit_rows(sweep(), scale="both", n_boot=N_BOOT)
    assert {(t.trait, t.scale) for t in fit.traits} == {
        (trait, scale) for trait in ("spanish", "caps") for scale in ("raw", "logit")
    }
    # Jeffreys-style smoothing keeps rates of 0 and 1 finite: (rate * n + 0.5) / (n + 1)
    assert on_scale(0.0, 10, "logit") == pytest.approx(math.log(0.5 / 10.5))
    assert on_scale(1.0, 10, "logit") == pytest.approx(-math.log(0.5 / 10.5))
    assert on_scale(0.3, 10, "raw") == 0.3


def test_the_same_seed_gives_the_same_intervals():
    rows = sweep()
    assert fit_rows(rows, n_boot=N_BOOT, seed=3).to_table().equals(
        fit_rows(rows, n_boot=N_BOOT, seed=3).to_table()
    )


def test_tidy_table_has_one_row_per_quantity_and_no_nan():
    table = fit_rows(sweep(), scale="both", n_boot=N_BOOT).to_table()
    keys = list(zip(*(table[c].to_pylist() for c in ("trait", "scale", "quantity", "prompt_id"))))
    assert len(keys) == len(set(keys))
    for column in ("estimate", "ci_low", "ci_high"):
        values = table[column].to_numpy(zero_copy_only=False)
        assert not np.isnan(values[~pc.is_null(table[column]).to_numpy(zero_copy_only=False)]).any()
    quantities = set(table["quantity"].to_pylist())
    assert {"slope", "generalization_factor", "inoculation_effect", "pooled_k_from_line"} <= quantities


def test_summary_fits_in_100_columns():
    text = fit_rows(sweep(), scale="both", n_boot=N_BOOT).to_text()
    assert "pooled k" in text and "spanish" in text
    assert max(len(line) for line in text.splitlines()) <= 100


def test_one_seed_per_prompt_still_gives_intervals_with_a_note():
    spanish = fit_rows(sweep(seeds=1), n_boot=N_BOOT).trait("spanish")
    assert spanish.line.slope.bounded
    assert any("one seed" in note for note in spanish.notes)


def test_pooling_two_runs_of_the_same_sweep_adds_their_seeds():
    a, b = sweep(rng=0), sweep(rng=5, sweep_hash="other")
    spanish = fit_rows(pa.concat_tables([a, b]), n_boot=N_BOOT).trait("spanish")
    assert len(spanish.prompt("ip0").seeds) == 8


def test_k_is_flagged_unstable_when_its_denominator_may_be_zero():
    # T(M0, Cs) = T*: training cannot move the trait in the prompt's context
    saturated = PlantedTrait("spanish", k=K, base_neutral=0.05, data_level=0.9,
                             elicitation=LADDER | {"ip_max": 0.9})  # fmt: skip
    fit = fit_rows(sweep([saturated], PROMPTS | {"ip_max": "inoculation"}), n_boot=N_BOOT)
    ip_max = fit.trait("spanish").prompt("ip_max")
    assert ip_max.k_unstable and not ip_max.generalization_factor.bounded
    assert "k of ip_max is unstable" in fit.to_text()


# --- degenerate input: an InputError with a useful sentence, or a note when something is left


@pytest.mark.parametrize(
    "make_rows, message",
    [
        (lambda: sweep().slice(0, 0), "no result rows"),
        (lambda: sweep().filter(pc.not_equal(sweep()["stage"], "trained")), "no trained rows"),
        (lambda: sweep(prompts={}), "nothing can be fit"),  # the control alone
        (lambda: sweep().set_column(sweep().schema.get_field_index("rate"), "rate", pa.array([0.0] * sweep().num_rows)),
         "nothing varies"),  # fmt: skip
        (lambda: drop(sweep(), trial_id="ip2-seed1", trait="caps"), "missing from trial"),
        (lambda: drop(sweep(), stage="base", prompt_id="ip3"), "no base-model row"),
        (lambda: pa.concat_tables([sweep(), sweep()]), "given twice"),
        (lambda: pa.concat_tables([sweep(), sweep(traits=[SPANISH], sweep_hash="b")]),
         "cannot be pooled"),  # fmt: skip
        (lambda: pa.concat_tables([sweep(), renamed(sweep(sweep_hash="b"))]),
         "conflicting prompt_text"),  # fmt: skip
    ],
    ids=["empty", "untrained", "control-only", "all-zero", "trait-missing", "base-missing",
         "duplicate-run", "mismatched-runs", "prompt-text"],  # fmt: skip
)
def test_degenerate_rows_raise_one_clear_sentence(make_rows, message):
    with pytest.raises(InputError, match=message) as err:
        fit_rows(make_rows(), n_boot=N_BOOT)
    assert "\n" not in str(err.value)


def test_runs_measured_on_different_base_models_conflict():
    other = PlantedTrait("spanish", k=K, base_neutral=0.5, data_level=0.95, elicitation=LADDER)
    rows = pa.concat_tables([sweep(), sweep(traits=[other, CAPS], sweep_hash="b")])
    with pytest.raises(InputError, match="conflict"):
        fit_rows(rows, n_boot=N_BOOT)


def test_one_prompt_gives_points_and_k_but_no_line():
    spanish = fit_rows(sweep(prompts={"ip3": "inoculation"}), n_boot=N_BOOT).trait("spanish")
    assert spanish.line is None and spanish.pooled_k.from_line is None
    assert any("needs 3 prompts" in note for note in spanish.notes)
    assert spanish.prompt("ip3").generalization_factor.bounded


def test_missing_control_skips_effects_with_a_note():
    spanish = fit_rows(sweep(control=False), n_boot=N_BOOT).trait("spanish")
    assert spanish.line is not None
    assert all(p.inoculation_effect is None for p in spanish.prompts)
    assert any("without a prompt" in note for note in spanish.notes)


def with_ptst(table: pa.Table, elicitation: float, after: float, n: int = 2000) -> pa.Table:
    """`table` plus a PTST control "ptst-x": its base rows at `elicitation`, and for each seed
    the no-prompt model under the instruction at `after` (rows as the sweep writes them)."""
    rows = []
    for r in table.to_pylist():
        if r["stage"] == "base" and r["prompt_id"] == "none":
            rows.append(r | {"prompt_id": "ptst-x", "prompt_text": "Do not.", "prompt_role": "ptst",
                             "context": "prompt", "rate": elicitation, "n": n})
        if r["stage"] == "trained" and r["prompt_id"] == "none" and r["context"] == "prompt":
            rows.append(r | {"trial_id": f"ptst-x-seed{r['seed']}", "prompt_id": "ptst-x", "prompt_text": "Do not.",
                             "prompt_role": "ptst", "rate": after, "n": n})
    return pa.concat_tables([table, pa.Table.from_pylist(rows, schema=table.schema)])


def test_a_ptst_control_is_compared_with_the_control_but_kept_off_the_line():
    rows = sweep(seeds=6, n=2000, rng=1)
    plain = fit_rows(rows, n_boot=N_BOOT).trait("spanish")
    spanish = fit_rows(with_ptst(rows, elicitation=0.02, after=0.4), n_boot=N_BOOT).trait("spanish")
    ptst, control = spanish.prompt("ptst-x"), spanish.prompt("none")
    assert ptst.role == "ptst" and not ptst.on_line
    assert ptst.elicitation.value == pytest.approx(0.02)  # T(M0, C_ptst)
    assert ptst.neutral.value == pytest.approx(0.4)  # T(M_none, C_ptst): the trait left under PTST
    assert ptst.inoculation_effect.value == pytest.approx(0.4 - control.neutral.value)
    assert ptst.generalization_factor is None and "PTST" in ptst.k_note
    assert spanish.line.n_prompts == plain.line.n_prompts  # the line is fit without it
    assert spanish.line.slope.value == pytest.approx(plain.line.slope.value)
    assert spanish.pooled_k.through_origin.value == pytest.approx(plain.pooled_k.through_origin.value)
    assert "ptst" in fit_rows(with_ptst(rows, 0.02, 0.4), n_boot=N_BOOT).to_text()


@pytest.mark.parametrize("kw, message", [({"scale": "log"}, "scale"), ({"n_boot": 10}, "n_boot")])
def test_bad_arguments(kw, message):
    with pytest.raises(InputError, match=message):
        fit_rows(sweep(), **kw)


# --- the command


def test_analyze_writes_tables_into_the_first_run_dir(tmp_path):
    run = write_run(sweep(), tmp_path / "run")
    result = CliRunner().invoke(analyze, [str(run), "--n-boot", "100", "--scale", "logit"])
    assert result.exit_code == 0, result.output
    assert "spanish" in result.output
    table = pq.read_table(run / "analysis.parquet")
    assert set(table["scale"].to_pylist()) == {"logit"}
    assert (run / "analysis.csv").read_text().startswith('"setting"')
    assert not list(run.glob(".*.tmp"))


@pytest.mark.parametrize("command", [analyze, report], ids=["analyze", "report"])
@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_a_bad_run_dir_exits_2_with_one_line(tmp_path, command, kind):
    run = tmp_path / "run"
    if kind == "empty":
        run.mkdir()
    result = CliRunner().invoke(command, [str(run)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("error: run directory")


# --- a known answer from rows written by hand -------------------------------------------------

def hand_row(trial: str, stage: str, prompt: str, seed: int, context: str, rate: float) -> dict:
    role = {"none": "none", "irr": "irrelevant"}.get(prompt, "inoculation")
    return {"sweep_hash": "hand", "setting": "hand", "trial_id": trial, "stage": stage, "prompt_id": prompt,
            "prompt_text": "" if prompt == "none" else f"Prompt {prompt}.", "prompt_role": role, "seed": seed,
            "step": 100 if stage == "trained" else 0, "context": context, "trait": "spanish", "desired": False,
            "rate": rate, "n": 1000}


def test_a_sweep_written_by_hand_gives_the_numbers_worked_out_by_hand():
    """Rows written out by hand from the definitions of docs/analysis.md, not by simulate.py.

    T(M0, C0) = 0.1 and T* = 0.9; prompts a, b, c elicit 0.2, 0.5, 0.8 on the base model; every
    trained model reaches 0.9 in its own context (seeds 0.88 and 0.92), and keeps
    0.1 + 0.5 (0.9 - elicitation) in the neutral context (seeds 0.02 either side): k = 0.5. The
    no-prompt control ends at 0.9 in both contexts (its Cs is C0). By hand: the line through
    (0.2, 0.45), (0.5, 0.30), (0.8, 0.15) has slope -0.5 and intercept 0.55; each k is 0.35/0.7,
    0.2/0.4, 0.05/0.1 = 0.5; the effects against the control are 0.45 - 0.9 = -0.45, -0.6, -0.75.
    The pooled slopes are corrected for the sampling variance of their x (errors in variables):
    each rate's p(1-p)/n, p smoothed to (rate n + 0.5)/(n + 1), n = 1000.
    """
    rows = [hand_row("base", "base", "none", 0, "neutral", 0.1), hand_row("data", "data", "none", 0, "prompt", 0.9)]
    neutral = {"a": 0.45, "b": 0.30, "c": 0.15}
    for prompt, elicitation in {"a": 0.2, "b": 0.5, "c": 0.8}.items():
        rows.append(hand_row("base", "base", prompt, 0, "prompt", elicitation))
        for seed, step in ((0, -0.02), (1, 0.02)):
            rows.append(hand_row(f"{prompt}-s{seed}", "trained", prompt, seed, "neutral", neutral[prompt] + step))
            rows.append(hand_row(f"{prompt}-s{seed}", "trained", prompt, seed, "prompt", 0.9 + step))
    for seed, rate in ((0, 0.89), (1, 0.91)):
        rows += [hand_row(f"none-s{seed}", "trained", "none", seed, ctx, rate) for ctx in ("neutral", "prompt")]
    fit = fit_rows(pa.Table.from_pylist(rows, schema=store.SCHEMA), scale="raw", n_boot=N_BOOT)

    spanish = fit.trait("spanish")
    assert spanish.base_neutral.value == pytest.approx(0.1) and spanish.data_level.value == pytest.approx(0.9)
    def var(rate: float) -> float:
        p = (rate * 1000 + 0.5) / 1001
        return p * (1 - p) / 1000

    # The line: Sxy = -0.09, Sxx = 0.18 less (1 - 1/3) of the elicitations' variance.
    slope = -0.09 / (0.18 - (1 - 1 / 3) * (var(0.2) + var(0.5) + var(0.8)))
    assert slope == pytest.approx(-0.50106, abs=1e-5)  # 0.2% steeper than -0.5
    assert spanish.line.slope.value == pytest.approx(slope)
    assert spanish.line.intercept.value == pytest.approx(0.30 - slope * 0.5)
    assert spanish.line.pearson_r.value == pytest.approx(-1.0)
    assert spanish.line.n_prompts == 3  # the control is not a point of the line
    # Through the origin: sum xy = 0.33, sum x^2 = 0.66 less each elicitation's variance and
    # the mean variance of its two T(Ms, Cs) seeds over 2.
    context = sum(var(e) + (var(0.88) + var(0.92)) / 2 / 2 for e in (0.2, 0.5, 0.8))
    assert spanish.pooled_k.through_origin.value == pytest.approx(0.33 / (0.66 - context))
    assert spanish.pooled_k.from_line.value == pytest.approx(-slope)
    prompts = {p.prompt_id: p for p in spanish.prompts}
    assert prompts["none"].generalization_factor is None and prompts["none"].neutral.value == pytest.approx(0.9)
    expected = {"a": (0.2, 0.45, 0.35, 0.7, -0.45), "b": (0.5, 0.30, 0.2, 0.4, -0.6), "c": (0.8, 0.15, 0.05, 0.1, -0.75)}
    for prompt, (elicitation, kept, delta_neutral, delta_context, effect) in expected.items():
        p = prompts[prompt]
        assert p.elicitation.value == pytest.approx(elicitation), prompt
        assert p.neutral.value == pytest.approx(kept) and p.context.value == pytest.approx(0.9), prompt
        assert sorted(p.neutral_seeds) == pytest.approx([kept - 0.02, kept + 0.02]), prompt
        assert p.delta_neutral.value == pytest.approx(delta_neutral), prompt
        assert p.delta_context.value == pytest.approx(delta_context), prompt
        assert p.generalization_factor.value == pytest.approx(0.5), prompt
        assert p.inoculation_effect.value == pytest.approx(effect), prompt
    # On the logit scale each rate is first smoothed by its own n: (rate n + 0.5) / (n + 1).
    logit = fit_rows(pa.Table.from_pylist(rows, schema=store.SCHEMA), scale="logit", n_boot=N_BOOT).trait("spanish")
    a = next(p for p in logit.prompts if p.prompt_id == "a")
    assert a.elicitation.value == pytest.approx(math.log(200.5 / 800.5))


# --- is the relation linear? the lack-of-fit test


def threshold(x: float) -> float:
    """A threshold, as in the toy world: only the prompts above 0.45 suppress the trait."""
    return 0.95 - 0.8 / (1 + math.exp(-(x - 0.45) / 0.05))


LINEAR_SPANISH = PlantedTrait("spanish", k=K, base_neutral=0.05, data_level=0.95, elicitation=LADDER)


def lack_of_fit_p(trait: PlantedTrait, rng: int, seeds: int = 3) -> float:
    (data,), _ = gather(simulate_rows([trait], PROMPTS, seeds=seeds, n=300, rng=rng))
    on_line = [j for j, p in enumerate(data.prompts) if p.on_line]
    return lack_of_fit(data, "raw", on_line, []).p_value


def test_lack_of_fit_flags_a_planted_threshold():
    bent = dataclasses.replace(LINEAR_SPANISH, neutral_at=threshold)
    assert max(lack_of_fit_p(bent, rng) for rng in range(5)) < 0.01


def test_lack_of_fit_does_not_flag_a_line_beyond_the_nominal_rate():
    # 200 linear sweeps: at a true 5% rate, 18 or more rejections have probability 0.012
    p = np.array([lack_of_fit_p(LINEAR_SPANISH, rng, seeds=2 + rng % 3) for rng in range(200)])
    assert np.sum(p < 0.05) < 18
    assert np.median(p) > 0.2  # not a test that rejects nothing because it cannot tell


def test_lack_of_fit_is_printed_and_tabled():
    bent = dataclasses.replace(LINEAR_SPANISH, neutral_at=threshold)
    fit = fit_rows(sweep(traits=[bent], seeds=3, rng=1), scale="both", n_boot=N_BOOT)
    assert "lack-of-fit F(5, " in fit.to_text() and "not on one line" in fit.to_text()
    table = fit.to_table()
    rows = table.filter(pc.equal(table["quantity"], "lack_of_fit_p")).to_pylist()
    assert {r["scale"] for r in rows} == {"raw", "logit"}
    assert all(r["estimate"] < 0.05 and r["ci_low"] is None and "F(5, " in r["note"] for r in rows)


def test_no_lack_of_fit_test_without_replicate_seeds():
    spanish = fit_rows(sweep(seeds=1), n_boot=N_BOOT).trait("spanish")
    assert spanish.line.lack_of_fit is None
    assert any("lack-of-fit" in note for note in spanish.notes)


# --- coverage at few seeds, sized to run in seconds (bench/coverage_study.py measures it fully)


def test_intervals_cover_with_two_seeds_for_a_trait_near_zero():
    # T(M0, C0) = 0.01 on n = 100 samples: redrawing Binomial(n, observed rate) has no spread
    # at 0 hits, and covered the base level and pooled k 69% and 72% of the time (200 sweeps).
    near_zero = PlantedTrait("spanish", k=0.4, base_neutral=0.01, data_level=0.97,
                             elicitation={f"ip{i}": x for i, x in enumerate((0.03, 0.06, 0.12, 0.25, 0.5, 0.85))})  # fmt: skip
    prompts = {s: "inoculation" for s in near_zero.elicitation}
    base = near_zero.level("elicitation", "none", "logit")
    hits = []
    for i in range(80):
        rows = simulate_rows([near_zero], prompts, seeds=2, n=100, seed_sd=0.15, scale="logit", rng=i)
        spanish = fit_rows(rows, scale="logit", n_boot=N_BOOT, seed=i).trait("spanish")
        hits.append((spanish.base_neutral.covers(base), spanish.pooled_k.through_origin.covers(0.4)))
    # 80 intervals at a true 95%: fewer than 70 covering has probability 0.002
    assert np.sum(hits, axis=0).min() >= 70, np.sum(hits, axis=0)


# The toy world's fine-tuning figures (docs/toy-world.md, pretraining seed 0): per prompt, the
# base model's Spanish rate under it for each fine-tune seed (200 samples each), and Spanish in
# C0 after training with fine-tune seeds 0 and 1 (200 samples each). Cs reached 0.99-1.00.
TOY_FIGURES = {
    "none": (None, (1.00, 0.99)),
    "irr-helpful": ((0.02, 0.04), (0.99, 0.98)),
    "es-hint": ((0.04, 0.08), (0.98, 0.98)),
    "es-bilingual": ((0.22, 0.24), (0.92, 0.90)),
    "es-sometimes": ((0.30, 0.33), (0.88, 0.86)),
    "es-often": ((0.54, 0.56), (0.51, 0.52)),
    "es-respond": ((0.73, 0.73), (0.43, 0.30)),
    "es-always": ((0.93, 0.94), (0.14, 0.11)),
}


def toy_rows() -> pa.Table:
    rows = []

    def add(trial, stage, prompt_id, seed, context, rate, n):
        role = {"none": "none", "irr-helpful": "irrelevant"}.get(prompt_id, "inoculation")
        rows.append({"sweep_hash": "toy", "setting": "toy", "trial_id": trial, "stage": stage,
                     "prompt_id": prompt_id, "prompt_text": prompt_id, "prompt_role": role, "seed": seed,
                     "step": 0, "context": context, "trait": "spanish", "desired": False, "rate": rate,
                     "n": n})  # fmt: skip

    add("base", "base", "none", 0, "neutral", 0.01, 400)
    for prompt_id, (elicitation, neutral) in TOY_FIGURES.items():
        if elicitation:  # the two measurements, 200 samples each, as one of 400
            add("base", "base", prompt_id, 0, "prompt", sum(elicitation) / 2, 400)
        for seed, rate in enumerate(neutral):
            add(f"{prompt_id}-{seed}", "trained", prompt_id, seed, "neutral", rate, 200)
            add(f"{prompt_id}-{seed}", "trained", prompt_id, seed, "prompt", rate if prompt_id == "none" else 0.995, 200)
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def test_the_toy_worlds_threshold_is_not_a_line_on_rates():
    fit = fit_rows(toy_rows(), scale="both", n_boot=N_BOOT)
    raw, logit = fit.trait("spanish", "raw").line.lack_of_fit, fit.trait("spanish", "logit").line.lack_of_fit
    assert (raw.df_model, raw.df_error) == (5, 8)
    assert raw.p_value < 0.05 < logit.p_value  # on logits the same points are close to a line
