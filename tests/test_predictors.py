"""Which predictor explains a sweep: on simulated rows where one predictor is planted as the true
one and the other is noise, the comparison picks the planted one, and `analyze --predictor`."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from conftest import Page, assert_png, decoded

from inocray.analysis import PREDICTORS, compare_predictors, plot_predictors, predictors_text, write_report
from inocray.analysis.simulate import PlantedTrait, simulate_rows, write_run
from inocray.cli import main
from inocray.cli.analyze import PREDICTORS as CLI_PREDICTORS
from inocray.results import SCHEMA

PROMPTS = {f"p{i}": "inoculation" for i in range(6)}
ELICITATION = {f"p{i}": 0.1 + 0.14 * i for i in range(6)}  # 0.10 .. 0.80: the planted truth


def _planted(seed: int = 1) -> pa.Table:
    """Rows whose T(Ms, C0) follows the planted elicitation on the App. H line (k 0.8)."""
    return simulate_rows([PlantedTrait("spanish", k=0.8, elicitation=ELICITATION)], PROMPTS, seeds=3, n=400,
                         rng=seed)


def _edited(table: pa.Table, logprob: dict[str, float], sampled: dict[str, float] | None = None) -> pa.Table:
    """The rows with each prompt's logprob elicitation set (interval +-0.02) and, given `sampled`,
    its sampled elicitation (the base row's rate in Cs) replaced."""
    rows = table.to_pylist()
    for r in rows:
        if r["stage"] == "base" and r["prompt_id"] in logprob:
            v = logprob[r["prompt_id"]]
            r |= {"logprob": v, "logprob_low": v - 0.02, "logprob_high": v + 0.02}
            if sampled is not None and r["context"] == "prompt":
                r["rate"] = sampled[r["prompt_id"]]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def _noise(seed: int) -> dict[str, float]:
    """Values with no relation to the planted elicitation."""
    values = np.random.default_rng(seed).permutation([0.05, 0.7, 0.2, 0.6, 0.4, 0.3])
    return dict(zip(PROMPTS, values.tolist()))


def test_the_planted_sampled_predictor_is_picked_over_a_noise_logprob():
    (c,) = compare_predictors(_edited(_planted(), logprob=_noise(7)), n_boot=300)
    assert c.better == "sampled", (c.difference, c.low, c.high)
    assert c.fits["sampled"].lopo < c.fits["logprob"].lopo
    assert c.fits["sampled"].pearson < -0.9 and c.fits["sampled"].spearman == pytest.approx(-1.0)
    assert c.fits["sampled"].slope == pytest.approx(-0.8, abs=0.1)  # the planted k, as -slope


def test_the_planted_logprob_predictor_is_picked_over_a_noise_sampled_rate():
    truth = {p: 2 * e - 0.5 for p, e in ELICITATION.items()}  # L(s): the elicitation on another scale
    (c,) = compare_predictors(_edited(_planted(), logprob=truth, sampled=_noise(7)), n_boot=300)
    assert c.better == "logprob", (c.difference, c.low, c.high)
    assert c.high < 0 and c.fits["logprob"].lopo < c.fits["sampled"].lopo
    assert c.fits["logprob"].slope == pytest.approx(-0.4, abs=0.05)  # -0.8 per unit of elicitation, halved


def test_rows_without_logprob_give_no_comparison_and_the_flag_says_so(tmp_path):
    run = write_run(_planted(), tmp_path / "run")
    assert compare_predictors(_planted()) == []
    result = CliRunner().invoke(main, ["analyze", str(run), "--predictor", "logprob", "--n-boot", "100"])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "no logprob elicitation" in result.output


def test_analyze_prints_the_chosen_predictor(tmp_path):
    run = write_run(_edited(_planted(), logprob=_noise(7)), tmp_path / "run")
    both = CliRunner().invoke(main, ["analyze", str(run), "--n-boot", "100"])
    assert both.exit_code == 0, both.output
    assert "  sampled  line" in both.output and "  logprob  line" in both.output
    assert "sampled elicitation predicts better" in both.output
    one = CliRunner().invoke(main, ["analyze", str(run), "--n-boot", "100", "--predictor", "logprob"])
    assert "  logprob  line" in one.output and "  sampled  line" not in one.output


def test_the_command_offers_the_analysis_predictors():
    assert CLI_PREDICTORS == PREDICTORS


def test_the_report_shows_both_predictors_scatter_plots(tmp_path):
    run = write_run(_edited(_planted(), logprob=_noise(7)), tmp_path / "run")
    page = Page()
    page.feed(write_report(run, n_boot=100).read_text())
    both = [src for src, alt in zip(page.images, page.alts) if alt.endswith("both predictors")]
    assert len(both) == 1
    assert_png(decoded(both[0]))


def test_plot_predictors_writes_the_reports_figure_to_a_file(tmp_path):
    (c,) = compare_predictors(_edited(_planted(), logprob=_noise(7)), n_boot=100)
    path = plot_predictors(c, tmp_path / "predictors.png")
    assert_png(path.read_bytes())


def test_on_the_scale_the_line_was_planted_on_the_predictors_line_holds_and_on_the_other_it_bends():
    """Rows planted on the App. H line of the logit scale, with elicitation from 0.02 to 0.95:
    on the logit scale the sampled predictor's lack-of-fit test does not reject the line, on the
    raw scale (where that line is an S-curve) it does; the logprob predictor's x is the same
    nats on both scales, its y is not."""
    spread = {f"p{i}": r for i, r in enumerate((0.02, 0.1, 0.3, 0.6, 0.85, 0.95))}
    rows = simulate_rows([PlantedTrait("spanish", k=0.9, base_neutral=0.02, data_level=0.97, elicitation=spread)],
                         PROMPTS, seeds=3, n=400, seed_sd=0.02, scale="logit", rng=3)
    rows = _edited(rows, logprob=_noise(7))
    (raw,) = compare_predictors(rows, n_boot=50)
    (logit,) = compare_predictors(rows, n_boot=50, scale="logit")
    assert logit.scale == "logit" and raw.scale == "raw"
    assert logit.fits["sampled"].lack_of_fit.p_value > 0.05
    assert raw.fits["sampled"].lack_of_fit.p_value < 0.01
    assert logit.x["logprob"] == raw.x["logprob"] and logit.y != raw.y
    assert "logit scale" in predictors_text([logit]) and "logit scale" not in predictors_text([raw])


def test_a_predictor_the_same_for_every_prompt_gets_no_line_and_no_comparison():
    """A trait no prompt elicits (sampled rate 0 for all, as a desired trait often is): the
    sampled predictor has no line, the logprob one still has, and nothing is compared."""
    (c,) = compare_predictors(_edited(_planted(), logprob=ELICITATION, sampled=dict.fromkeys(PROMPTS, 0.0)),
                              n_boot=50)
    assert np.isnan(c.fits["sampled"].slope) and np.isnan(c.fits["sampled"].lopo)
    assert np.isfinite(c.fits["logprob"].slope) and c.better is None and np.isnan(c.difference)
    text = predictors_text([c])
    assert "sampled  +0.000 for every prompt: no line" in text and "error logprob - sampled" not in text
