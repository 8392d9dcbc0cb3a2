"""The report: PNG plots and one self-contained report.html with every image embedded."""

from __future__ import annotations

import base64

from click.testing import CliRunner
from conftest import Page, assert_png, decoded

from inocray.analysis import fit_rows
from inocray.analysis.simulate import PlantedTrait, simulate_rows, write_run
from inocray.cli.report import command as report
from inocray.analysis._report import _effects_figure, _generalization_figure, _img, plot_elicitation, write_report

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
    # one effects plot per setting, then an elicitation and a generalization plot per trait
    assert len(page.images) == 1 + 2 * len(TRAITS)
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
