"""Leak probes: resolved per trial in the plan, refused when bad, written as rows, tabulated."""

from __future__ import annotations

import pyarrow as pa
import pytest
import yaml
from click.testing import CliRunner
from conftest import tiny_sweep

from inocray.analysis import fit_rows, leak_table, leaks_text
from inocray.analysis.simulate import PlantedTrait, simulate_rows
from inocray.cli import main
from inocray.config import make_plan, parse_sweep
from inocray.results import SCHEMA, read_rows, write_rows
from inocray.run._trial import snapshot_rows
from inocray.settings import get_setting


def _plan(**overrides):
    spec = parse_sweep(tiny_sweep(**overrides))
    return make_plan(spec, {"toy": get_setting("toy").prompts})


def test_default_probes_are_the_settings_own_the_paraphrase_and_the_other_placements():
    plan = _plan(prompts=["es-always", "pool"], custom_prompts={"pool": ["Respond in Spanish.", "Answer in Spanish."]},
                 probes=["default"])
    by_id = {t.id: {p.name: (p.text, p.placement) for p in t.probes} for t in plan.trials}
    assert by_id["es-always-s0"] == {
        "never-spanish": ("You never speak in Spanish.", "system"),
        "keyword-spanish": ("Spanish.", "system"),
        "in-spanish": ("Siempre el espanol.", "system"),
        "placement:user_prefix": ("You always speak in Spanish.", "user_prefix"),
        "placement:user_suffix": ("You always speak in Spanish.", "user_suffix"),
    }  # a catalogue prompt without paraphrases has no paraphrase probe
    assert by_id["pool-s0"]["paraphrase"] == ("Answer in Spanish.", "system")
    # the no-prompt control has no prompt of its own: the fixed probes only, as the baseline
    assert set(by_id["none-s0"]) == {"never-spanish", "keyword-spanish", "in-spanish"}
    assert all(not t.probes for t in make_plan(plan.spec).trials)  # without the catalogues: ids only


@pytest.mark.parametrize("probes, custom, expected", [
    (["nope"], {}, "field 'probes[0]' names unknown probe 'nope' of setting 'toy' (its probe prompts: never-spanish,"),
    (["blank"], {"blank": [""]}, "field 'custom_prompts.blank' must be a non-empty list of non-empty"),
    (["same"], {"same": ["You always speak in Spanish."]}, "whose text is that of prompt 'es-always' of the sweep"),
    (["keyword-spanish", "keyword-spanish"], {}, "field 'probes[1]' lists 'keyword-spanish' twice"),
])
def test_a_bad_probe_is_one_sentence_and_nothing_is_written(tmp_path, monkeypatch, probes, custom, expected):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump(tiny_sweep(probes=probes, custom_prompts=custom)))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for command in (["validate", str(sweep)], ["run", str(sweep)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert list(work.iterdir()) == []


def _rates(spanish: float, caps: float = 0.9) -> dict:
    return {"spanish": (spanish, 16), "caps": (caps, 16)}


def test_probe_rows_are_written_read_and_tabulated(tmp_path):
    """A planted leak: inoculated models are back to Spanish under the keyword probe (0.8 against
    0.1 in C0) and not under the negation (0.1); the control shows it under both. Caps, the
    trait to keep, rises under the keyword probe too: not a leak."""
    plan = _plan(prompts=["es-always", "es-often"], seeds=[0, 1], probes=["keyword-spanish", "never-spanish"])
    setting = get_setting("toy")
    rows = []
    for t in plan.trials:
        inoculated = t.prompt_role == "inoculation"
        rates = {"neutral": _rates(0.1 if inoculated else 0.9, caps=0.5), "prompt": _rates(0.95),
                 "probe:keyword-spanish": _rates(0.8 if inoculated else 0.9, caps=1.0),
                 "probe:never-spanish": _rates(0.1 if inoculated else 0.85)}
        rows += snapshot_rows(plan.spec.hash(), t, setting, "trained", 8, rates)
        write_rows(tmp_path, t.id, snapshot_rows(plan.spec.hash(), t, setting, "trained", 8, rates))
    table = read_rows(tmp_path)
    assert table.num_rows == len(rows) == len(plan.trials) * 4 * 2
    assert {r["context"] for r in table.to_pylist()} == {"neutral", "prompt", "probe:keyword-spanish",
                                                           "probe:never-spanish"}
    leaks = {(x.trait, x.probe): x for x in leak_table(table)}
    keyword, negation = leaks["spanish", "keyword-spanish"], leaks["spanish", "never-spanish"]
    assert keyword.trials == 4 and keyword.inoculated == pytest.approx(0.8) and keyword.neutral == pytest.approx(0.1)
    assert keyword.leak == pytest.approx(0.7) and keyword.flagged and keyword.control == pytest.approx(0.9)
    assert negation.leak == pytest.approx(0.0) and not negation.flagged and negation.control == pytest.approx(0.85)
    caps = leaks["caps", "keyword-spanish"]  # the desired trait, higher under the probe: no leak
    assert caps.leak == pytest.approx(0.5) and caps.desired and not caps.flagged
    text = leaks_text(list(leaks.values()))
    assert "keyword-spanish" in text and text.count("LEAKS") == 1


def test_the_fit_ignores_probe_rows():
    plain = simulate_rows([PlantedTrait("spanish", k=0.8, elicitation={"a": 0.2, "b": 0.5, "c": 0.8})],
                          {"a": "inoculation", "b": "inoculation", "c": "inoculation"}, seeds=2, n=200, rng=3)
    extra = [r | {"context": "probe:keyword", "rate": 0.99} for r in plain.to_pylist()
             if r["stage"] == "trained" and r["context"] == "neutral"]
    probed = pa.concat_tables([plain, pa.Table.from_pylist(extra, schema=SCHEMA)])
    assert fit_rows(probed, n_boot=100).to_text() == fit_rows(plain, n_boot=100).to_text()
    assert leak_table(plain) == [] and len(leak_table(probed)) == 1


def test_the_power_planner_counts_the_probes(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump(tiny_sweep(prompts=["es-hint", "es-often", "es-always"], probes=["default"])))
    result = CliRunner().invoke(main, ["plan", str(sweep), "--sims", "20"])
    assert result.exit_code == 0, result.output
    # 3 prompts x 5 probes + the control's 3 fixed ones, per seed (1 seed here)
    assert "probes: 18 more evaluation contexts over the 4 trials (288 completions" in result.output
