"""The report: PNG plots and one self-contained report.html with every image embedded."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

from click.testing import CliRunner
from matplotlib import image

from inocray.analysis import fit_rows
from inocray.analysis.simulate import PlantedTrait, simulate_rows, write_run
from inocray.cli.report import command as report
from inocray.report import plot_effects, plot_elicitation, plot_generalization, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PROMPTS = {"weak": "inoculation", "mid": "inoculation", "strong": "inoculation",
           "unrelated": "irrelevant"}  # fmt: skip
TRAITS = [
    PlantedTrait("spanish", k=0.6, elicitation={"weak": 0.2, "mid": 0.5, "strong": 0.8}),
    PlantedTrait("caps", k=1.0, desired=True),
]


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.alts: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag, attrs):
        self.images += [v for k, v in attrs if tag == "img" and k == "src"]
        self.alts += [v for k, v in attrs if tag == "img" and k == "alt"]
        self.tables += tag == "table"


def _decoded(src: str) -> bytes:
    head, data = src.split(",", 1)
    assert head == "data:image/png;base64"
    return base64.b64decode(data)


def _assert_png(data: bytes) -> None:
    assert data.startswith(PNG_MAGIC)
    pixels = image.imread(io.BytesIO(data), format="png")
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100


def test_write_report_embeds_every_plot_and_the_tables(tmp_path):
    run = write_run(simulate_rows(TRAITS, PROMPTS, seeds=3, n=200), tmp_path / "run")
    path = write_report(run, n_boot=100)
    assert path == run / "report.html"
    page = _Page()
    page.feed(path.read_text())
    # one effects plot per setting, then an elicitation and a generalization plot per trait
    assert len(page.images) == 1 + 2 * len(TRAITS)
    for src in page.images:
        _assert_png(_decoded(src))
    assert page.tables == 1 + 2 * len(TRAITS)  # the prompts, then raw and logit per trait
    assert "spanish" in path.read_text()


def test_plots_write_pngs_even_without_a_line(tmp_path):
    rows = simulate_rows(TRAITS, {"weak": "inoculation"}, seeds=2, n=100)
    fit = fit_rows(rows, n_boot=100)
    assert fit.trait("spanish").line is None
    for plot in (plot_elicitation, plot_generalization):
        _assert_png(plot(fit, "spanish", tmp_path / f"{plot.__name__}.png").read_bytes())
    _assert_png(plot_effects(fit, tmp_path / "effects.png").read_bytes())


def test_report_command_prints_the_path(tmp_path):
    run = write_run(simulate_rows(TRAITS, PROMPTS, seeds=2, n=100), tmp_path / "run")
    result = CliRunner().invoke(report, [str(run), "--n-boot", "100"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(run / "report.html")


def test_prompts_at_one_point_share_one_label_in_the_scatter():
    """The toy sweep puts none, irr-helpful and es-hint at (0, 1): their ids must not overprint."""
    import dataclasses

    from inocray import report

    fit = fit_rows(simulate_rows(TRAITS, PROMPTS, seeds=2, n=100), n_boot=100)
    t = fit.trait("spanish", "raw")
    at = {p.prompt_id: p for p in t.prompts}
    same = dataclasses.replace(at["unrelated"], elicitation=at["mid"].elicitation, neutral=at["mid"].neutral)
    t = dataclasses.replace(t, prompts=[same if p.prompt_id == "unrelated" else p for p in t.prompts])
    labels = [text.get_text() for text in report._elicitation_figure(t).axes[0].texts]
    assert sorted(sorted(label.split(", ")) for label in labels) == [["mid", "unrelated"], ["none"], ["strong"], ["weak"]]
