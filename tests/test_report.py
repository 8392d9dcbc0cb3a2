"""The report: PNG plots and one self-contained report.html with every image embedded."""

from __future__ import annotations

import base64

import pytest
from click.testing import CliRunner
from conftest import Page, assert_png, decoded

from inocray.analysis import fit_rows
from inocray.analysis._report import (_effects_figure, _generalization_figure, _img, _kept_figure, plot_elicitation,
                                      write_report)
from inocray.analysis._text import kept_lines, kept_verdicts
from inocray.analysis.simulate import PlantedTrait, simulate_rows, write_run
from inocray.cli.report import command as report

PROMPTS = {"weak": "inoculation", "mid": "inoculation", "strong": "inoculation",
           "unrelated": "irrelevant"}  # fmt: skip
TRAITS = [
    PlantedTrait("spanish", k=0.6, elicitation={"weak": 0.2, "mid": 0.5, "strong": 0.8}),
    PlantedTrait("caps", k=1.0, desired=True),
]


def test_write_report_embeds_every_plot_and_the_tables(tmp_path):
    run = write_run(simulate_rows(TRAITS, PROMPTS, seeds=3, n=200), tmp_path / "run")
    path = write_report(run, n_boot=100)
    assert path == run / "report.html"
    page = Page()
    page.feed(path.read_text())
    # one effects plot per setting, then an elicitation and a generalization plot per undesired
    # trait, and the kept view per desired one
    assert len(page.images) == 1 + 2 + 1
    for src in page.images:
        assert_png(decoded(src))
    assert page.tables == 1 + 2 * len(TRAITS)  # the prompts, then raw and logit per trait
    assert "spanish" in path.read_text()


def test_plots_draw_even_without_a_line(tmp_path):
    rows = simulate_rows(TRAITS, {"weak": "inoculation"}, seeds=2, n=100)
    fit = fit_rows(rows, n_boot=100)
    assert fit.trait("spanish").line is None
    assert_png(plot_elicitation(fit, "spanish", tmp_path / "elicitation.png").read_bytes())
    for figure in (_generalization_figure(fit.trait("spanish")), _effects_figure(list(fit.traits))):
        assert_png(base64.b64decode(_img(figure, "plot").split("base64,")[1].split('"')[0]))


def test_report_command_prints_the_path(tmp_path):
    run = write_run(simulate_rows(TRAITS, PROMPTS, seeds=2, n=100), tmp_path / "run")
    result = CliRunner().invoke(report, [str(run), "--n-boot", "100"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(run / "report.html")


def test_prompts_at_one_point_share_one_label_in_the_scatter():
    """The toy sweep puts none, irr-helpful and es-hint at (0, 1): their ids must not overprint."""
    import dataclasses

    from inocray.analysis import _report as report

    fit = fit_rows(simulate_rows(TRAITS, PROMPTS, seeds=2, n=100), n_boot=100)
    t = fit.trait("spanish", "raw")
    at = {p.prompt_id: p for p in t.prompts}
    same = dataclasses.replace(at["unrelated"], elicitation=at["mid"].elicitation, neutral=at["mid"].neutral)
    t = dataclasses.replace(t, prompts=[same if p.prompt_id == "unrelated" else p for p in t.prompts])
    labels = [text.get_text() for text in report._elicitation_figure(t).axes[0].texts]
    assert sorted(sorted(label.split(", ")) for label in labels) == [["mid", "unrelated"], ["none"], ["strong"], ["weak"]]


@pytest.mark.parametrize("neutral, verdict", [(0.9, "kept"), (0.3, "LOST")])
def test_a_desired_trait_no_prompt_elicits_shows_whether_it_was_kept_not_a_line_or_k(tmp_path, neutral, verdict):
    """Elicitation 0.00 for every prompt: no elicitation scatter and no k plot, but each prompt's
    T(Ms, C0) against the no-prompt control's, marked with the verdict the terminal prints."""
    caps = PlantedTrait("caps", base_neutral=0.0, data_level=0.8, desired=True, neutral_at=lambda x: neutral)
    rows = simulate_rows([TRAITS[0], caps], PROMPTS, seeds=3, n=200)
    page = Page()
    page.feed(write_report(write_run(rows, tmp_path / "run"), n_boot=100).read_text())
    assert "caps: was it kept?" in page.alts
    assert not {"caps: elicitation line", "caps: generalization factor"} & set(page.alts)
    assert {"spanish: elicitation line", "spanish: generalization factor"} <= set(page.alts)
    assert "spanish: was it kept?" not in page.alts

    t = fit_rows(rows, n_boot=100).trait("caps", "raw")
    assert all(p.elicitation.value == 0 for p in t.prompts)
    verdicts = kept_verdicts(t)
    assert sorted(p.prompt_id for p, _ in verdicts) == sorted(PROMPTS) and {v for _, v in verdicts} == {verdict}
    marks = [text.get_text() for text in _kept_figure(t).axes[0].texts]
    assert marks == [f"{v}: effect {p.inoculation_effect:.2f}" for p, v in verdicts]
    assert kept_lines(t) == [f"  {v:<8} {p.prompt_id}: neutral vs no-prompt control {p.inoculation_effect:.2f}"
                             for p, v in verdicts]  # the terminal's lines, from the same verdicts
