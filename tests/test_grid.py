"""Grid sweeps without Ray: the sweep file's grid, its cells and trials, bad grids refused,
status per cell, the engines counted, and cells compared along an axis (`analyze --by`)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from click.testing import CliRunner
from conftest import result_row, tiny_sweep

from inocray.analysis import compare, fit_rows
from inocray.analysis.simulate import PlantedTrait, simulate_rows, write_run
from inocray.cli import main
from inocray.config import make_plan, parse_spec
from inocray.config._grid import is_grid
from inocray.results import read_rows
from inocray.run import _resources as resources
from inocray.run import run_progress
from inocray.settings import get_setting

GRID = """\
name: g
setting: toy
prompts: [es-hint, es-always]
seeds: [0, 1]
grid:
  train.lr: [3e-4, 1e-3]
  train.lora.r: [4, 8]
"""


def test_a_grid_has_a_cell_per_combination_each_a_one_setting_sweep():
    spec = parse_spec({"name": "g", "settings": [{"setting": "toy", "prompts": ["es-always"]},
                                                 {"setting": "spanish_caps", "prompts": ["es-always"],
                                                  "placement": "user_suffix"}],
                       "models": ["toy", "smollm2-135m"], "irrelevant": ["irr-helpful"], "seeds": [0],
                       "grid": {"train.lr": ["1e-3", 3e-4], "eval.temperature": [0.5, 1.0]}})
    plan = make_plan(spec)
    cells = plan.cells
    assert len(cells) == 2 * 2 * 2 * 2
    first = cells[0]
    assert first.id == "toy,toy,lr=0.001,temp=0.5"
    assert (first.spec.setting, first.spec.model, first.spec.train.lr, first.spec.eval.temperature) == \
        ("toy", "toy", 1e-3, 0.5)
    assert not is_grid(first.spec)  # a cell is a plain one-setting sweep
    placed = {c.setting: c.spec.placement for c in cells}
    assert placed == {"toy": "system", "spanish_caps": "user_suffix"}
    # a key an entry leaves out comes from the top level
    assert all(c.spec.irrelevant == ["irr-helpful"] for c in cells)
    # base model measured once per (setting, model, eval axes), not per learning rate
    assert len(plan.base) == 2 * 2 * 2
    assert plan.base[0].id == "base,toy,toy,temp=0.5"
    assert [m.id for m in plan.data] == ["data,toy", "data,spanish_caps"]
    assert plan.describe() == "setting 2 x model 2 x train.lr 2 x eval.temperature 2 = 16 cells"


def test_grid_trials_are_named_by_their_cell_and_interleaved(tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text(GRID)
    spec = parse_spec(yaml.safe_load(GRID))
    plan = make_plan(spec, {"toy": get_setting("toy").prompts})
    trials = plan.trials
    ids = [t.id for t in trials]
    assert ids == [t.id for t in make_plan(spec).trials] and len(ids) == len(set(ids)) == 4 * 3 * 2
    assert trials[0].prompt_text == get_setting("toy").prompts["es-hint"].text  # the wording, with the catalogues
    # the first trial of every cell comes before the second of any
    assert ids[:4] == ["lr=0.0003,r=4,es-hint-s0", "lr=0.0003,r=8,es-hint-s0", "lr=0.001,r=4,es-hint-s0",
                       "lr=0.001,r=8,es-hint-s0"]
    assert {t.cell.id for t in trials[:4]} == {c.id for c in plan.cells}
    assert all(t.id.startswith(t.cell.id + ",") for t in trials)
    result = CliRunner().invoke(main, ["validate", str(f)])
    assert result.exit_code == 0, result.output
    assert "grid: setting 1 x model 1 x train.lr 2 x train.lora.r 2 = 4 cells, 24 trials" in result.output
    assert "  cell lr=0.001,r=8: 6 trials" in result.output


def test_a_sweep_without_a_grid_is_one_cell_with_the_ids_of_before():
    spec = parse_spec(tiny_sweep(name="t"))
    plan = make_plan(spec)
    (only,) = plan.cells
    assert only.id == "" and only.spec == spec
    assert [t.id for t in plan.trials] == ["es-always-s0", "none-s0"]
    assert [m.id for m in plan.base] == ["base"] and [m.id for m in plan.data] == ["data"]


def test_a_grid_record_reads_back_to_the_same_sweep():
    spec = parse_spec({"name": "g", "settings": [{"setting": "toy", "prompts": ["es-always"]}],
                       "models": ["toy"], "grid": {"train.lr": [1e-3, 2e-3]}})
    again = parse_spec(json.loads(json.dumps(spec.record())))
    assert again == spec and again.hash() == spec.hash()


def template_without_system(tmp: Path) -> str:
    """A model directory whose chat template refuses a system message (as Gemma's does)."""
    from inocray.models.toy.tokenizer import build_tokenizer

    tok = build_tokenizer()
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}"
                         "{{ raise_exception('System role not supported') }}{% endif %}{{ m['content'] }}{% endfor %}")
    path = tmp / "no-system"
    tok.save_pretrained(path)
    return str(path)


BAD_GRIDS = {  # name -> (sweep file text, what the one line says)
    "unknown axis": (GRID.replace("train.lora.r:", "train.rank:"), "field 'grid.train.rank' is not an axis"),
    "axis value failing its field's check": (GRID.replace("[3e-4, 1e-3]", "[3e-4, -1]"),
                                             "field 'grid.train.lr[1]' must be positive"),
    "axis value of the wrong type": (GRID.replace("train.lora.r: [4, 8]", "train.zero_stage: [2, two]"),
                                     "field 'grid.train.zero_stage[1]' must be an integer"),
    "axis value not a choice": (GRID.replace("train.lora.r: [4, 8]", "train.method: [lora, qlora]"),
                                "field 'grid.train.method[1]' must be one of lora, full"),
    "duplicate axis values": (GRID.replace("[4, 8]", "[8, 8]"), "field 'grid.train.lora.r' lists a value twice"),
    "empty axis": (GRID.replace("[4, 8]", "[]"), "field 'grid.train.lora.r' must be a non-empty list"),
    "negative temperature": (GRID.replace("train.lora.r: [4, 8]", "eval.temperature: [1.0, -0.5]"),
                             "field 'grid.eval.temperature[1]' must not be negative"),
    "a cell breaking a constraint between fields": (
        GRID.replace("[4, 8]", "[8, 32]"), "(cell lr=0.0003,r=32): field 'engine.max_lora_rank' must be at least"),
    "a cell with fewer steps than warmup": (
        GRID.replace("train.lora.r: [4, 8]", "train.steps: [5, 50]") + "train: {warmup_steps: 10}\n",
        "(cell lr=0.0003,steps=5): field 'train.warmup_steps' must be below"),
    "setting beside settings": (
        "name: g\nsetting: toy\nsettings: [{setting: toy, prompts: [es-always]}]\n",
        "field 'setting' cannot be given beside 'settings'"),
    "a setting listed twice": (
        "name: g\nsettings: [{setting: toy, prompts: [es-always]}, {setting: toy, prompts: [es-hint]}]\n",
        "field 'settings[1].setting' names 'toy' again"),
    "unknown prompt of a second setting": (
        "name: g\nsettings: [{setting: toy, prompts: [es-always]}, {setting: spanish_caps, prompts: [es-nope]}]\n",
        "field 'settings[1].prompts[0]' names unknown prompt"),
    "unknown key in a setting entry": (
        "name: g\nsettings: [{setting: toy, prompts: [es-always], lr: 1}]\n", "unknown field 'settings[0].lr'"),
    "bad placement of an entry": (
        "name: g\nsettings: [{setting: toy, prompts: [es-always], placement: sytem}]\n",
        "field 'settings[0].placement' must be one of"),
    "model beside models": (GRID + "model: toy\nmodels: [toy]\n", "field 'models' cannot be given beside 'model'"),
    "a model listed twice": (GRID + "models: [toy, toy]\n", "field 'models[1]' names 'toy' again"),
    "a model that is not a directory": (GRID + "models: [toy, /no/such/model]\n", "field 'models[1]' names"),
    "a model that cannot serve the setting's placement": (
        GRID + "models: [toy, {no_system}]\n", "field 'placement' is 'system', but the chat template"),
    "an entry whose model cannot serve its placement": (
        "name: g\nmodels: [{no_system}]\nsettings: [{setting: toy, prompts: [es-always], placement: user_prefix},"
        " {setting: spanish_caps, prompts: [es-always]}]\n", "field 'settings[1].placement' is 'system'"),
}


@pytest.mark.parametrize("case", sorted(BAD_GRIDS))
@pytest.mark.parametrize("cmd", ["validate", "run"])
def test_a_bad_grid_is_one_sentence_exit_2_and_nothing_written(tmp_path, monkeypatch, case, cmd):
    text, expected = BAD_GRIDS[case]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    f = tmp_path / "bad.yaml"
    f.write_text(text.replace("{no_system}", template_without_system(tmp_path)) if "{no_system}" in text else text)
    result = CliRunner().invoke(main, [cmd, str(f)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert str(f) in lines[0] and expected in lines[0], lines[0]
    assert list(work.iterdir()) == []  # no runs/NAME-HASH, nothing else


def test_every_engine_is_counted_by_the_resource_check():
    defaults = {"seeds": None, "train": None, "eval": None}  # the resource check reads the file's defaults
    one = make_plan(parse_spec(tiny_sweep(name="g", **defaults)))
    two = make_plan(parse_spec(tiny_sweep(name="g", models=["toy", "smollm2-135m"], **defaults)))
    assert two.placement.engines.cpu == 2 * one.placement.engines.cpu
    # 2 CPUs hold one engine (0.5) and 2 trials (0.5 each), but two engines leave room for 1
    assert resources.concurrent_trials({"CPU": 2.0}, one) == 3 and resources.concurrent_trials({"CPU": 2.0}, two) == 2
    found = resources.problem({"CPU": 1.2}, two)
    assert found and found.startswith("the 2 evaluation engines (1 CPU) and one trial")
    # the most demanding cell sets what a trial needs
    full = make_plan(parse_spec(tiny_sweep(name="g", engine={"num_gpus": 1}, grid={"train.method": ["lora", "full"]},
                                           **defaults)))
    assert full.placement.trial.gpu == 1


def planted_grid(tmp_path: Path, ks: dict[float, float], desired: bool = False) -> Path:
    """A simulated run of a grid over train.lr with planted k per learning rate (and r); with
    `desired`, a desired trait "caps" that only prompt "a" elicits."""
    spec = parse_spec(tiny_sweep(name="sim", prompts=["es-hint"], train=None, eval=None,
                                 grid={"train.lr": list(ks), "train.lora.r": [4, 8]}))
    elicitation = {"a": 0.2, "b": 0.4, "c": 0.6, "d": 0.8}
    caps = [PlantedTrait("caps", desired=True, elicitation={"a": 0.5})] * desired
    tables = [simulate_rows([PlantedTrait("spanish", k=ks[dict(c.axes)["train.lr"]], elicitation=elicitation), *caps],
                            {p: "inoculation" for p in elicitation}, seeds=3, rng=i,
                            grid=c.columns() | {"model": "toy"}, sweep_hash=spec.hash(), setting="toy")
              for i, c in enumerate(make_plan(spec).cells)]
    run = write_run(pa.concat_tables(tables), tmp_path / "run")
    (run / "sweep.json").write_text(json.dumps({"hash": spec.hash(), "spec": spec.record()}))
    return run


def test_by_recovers_a_planted_difference_between_cells(tmp_path):
    run = planted_grid(tmp_path, {3e-4: 0.7, 1e-3: 0.2})
    fit = fit_rows(read_rows(run), n_boot=300)
    assert len({t.cell for t in fit.traits}) == 4  # one fit per cell
    comparisons = compare(fit, "train.lr")
    assert sorted(dict(c.fixed)["train.lora.r"] for c in comparisons) == [4, 8]
    for c in comparisons:
        low, high = c.points  # in order of the learning rate
        assert (low.value, high.value) == (3e-4, 1e-3)
        assert low.pooled_k.covers(0.7) and high.pooled_k.covers(0.2), c.to_text()
        assert not low.pooled_k.overlaps(high.pooled_k)
        assert low.slope.covers(-0.7) and high.slope.covers(-0.2)  # slope = -k
        assert low.strongest == high.strongest == "d"
    # a desired trait shows the cost of the prompt strongest on the undesired one
    fit = fit_rows(read_rows(planted_grid(tmp_path / "two", {3e-4: 0.7, 1e-3: 0.2}, desired=True)), n_boot=100)
    assert {p.strongest for c in compare(fit, "train.lr") for p in c.points} == {"d"}
    # the rank changes nothing here: its comparisons' intervals overlap
    for c in compare(fit, "train.lora.r"):
        assert c.points[0].pooled_k.overlaps(c.points[1].pooled_k)

    result = CliRunner().invoke(main, ["analyze", str(run), "--by", "train.lr", "--n-boot", "200"])
    assert result.exit_code == 0, result.output
    assert "cells side by side, by train.lr" in result.output
    assert "toy / spanish (undesired), raw scale, by train.lr (train.lora.r 4)" in result.output
    result = CliRunner().invoke(main, ["analyze", str(run), "--by", "eval.temperature"])
    assert result.exit_code == 2 and "do not differ in eval.temperature" in result.output
    assert "they differ in: train.lr, train.lora.r" in result.output


def test_without_a_planted_difference_the_cells_agree(tmp_path):
    """The same k in both cells: --by shows no difference (the test above is not a given)."""
    fit = fit_rows(read_rows(planted_grid(tmp_path, {3e-4: 0.5, 1e-3: 0.5})), n_boot=300)
    for c in compare(fit, "train.lr"):
        assert c.points[0].pooled_k.overlaps(c.points[1].pooled_k), c.to_text()


def test_screen_predicts_from_the_grid_cell_it_is_told_and_refuses_to_guess(tmp_path):
    from inocray.errors import InputError
    from inocray.run._screen import _fitted_lines

    run = planted_grid(tmp_path, {3e-4: 0.7, 1e-3: 0.2})
    screened = tiny_sweep(name="scr", seeds=None, train=None, eval=None)  # eval at its defaults, as the run's
    spec, setting = parse_spec(screened), get_setting("toy")
    for cell, k in (("lr=0.0003,r=4", 0.7), ("lr=0.001,r=8", 0.2)):
        line = _fitted_lines(run, spec, setting, lambda *a: None, cell)["spanish"].line
        assert line.slope.covers(-k) and not line.slope.covers(-0.45), (cell, line.slope)
    with pytest.raises(InputError, match=r"is a grid of 4 cells of setting toy \(lr=0.0003,r=4, .*choose the one .* --cell"):
        _fitted_lines(run, spec, setting, lambda *a: None)
    with pytest.raises(InputError, match=r"no grid cell 'lr=1' of setting toy; its cells: lr=0.0003,r=4"):
        _fitted_lines(run, spec, setting, lambda *a: None, "lr=1")
    # through the command: one sentence, exit 2, nothing measured or written
    sweep, prompts, out = tmp_path / "s.yaml", tmp_path / "c.txt", tmp_path / "out"
    sweep.write_text(yaml.safe_dump(screened))
    prompts.write_text("Speak Spanish.\n")
    for extra, said in ((["--from", str(run)], "choose the one to predict from with --cell"),
                        (["--cell", "lr=0.001,r=8"], "give --from too")):
        result = CliRunner().invoke(main, ["screen", str(sweep), "--prompts", str(prompts), "--out", str(out), *extra])
        assert result.exit_code == 2 and said in result.output and not out.exists(), result.output


def test_status_counts_done_trials_per_cell(tmp_path):
    run = planted_grid(tmp_path, {3e-4: 0.7, 1e-3: 0.2})
    progress = run_progress(run)
    # the simulated trial ids are not the sweep's, so no trial counts as done ...
    assert "trials done: 0 of 8" in progress.to_text()
    assert "  cell lr=0.0003,r=4: 0 of 2" in progress.to_text()
    # ... until rows files by the planned ids exist
    from inocray.results import _rows as store

    for trial in ("lr=0.001,r=8,es-hint-s0", "lr=0.001,r=8,none-s0", "lr=0.001,r=4,none-s0"):
        store.write_rows(run, trial, [result_row(sweep_hash=progress.sweep_hash, trial_id=trial)])
    text = run_progress(run).to_text()
    assert "trials done: 3 of 8" in text
    assert "  cell lr=0.001,r=8: 2 of 2" in text and "  cell lr=0.001,r=4: 1 of 2" in text
    assert "  cell lr=0.0003,r=4: 0 of 2" in text


def test_the_report_has_a_section_per_cell_and_a_comparison_per_axis(tmp_path):
    from conftest import Page

    from inocray.analysis import write_report

    run = planted_grid(tmp_path, {3e-4: 0.7, 1e-3: 0.2})
    page = write_report(run, n_boot=100).read_text()
    for c in ("lr=0.0003,r=4", "lr=0.0003,r=8", "lr=0.001,r=4", "lr=0.001,r=8"):
        assert f"<h2>Setting toy, cell {c}</h2>" in page
    assert "<h2>Across the grid: by train.lr</h2>" in page and "<h2>Across the grid: by train.lora.r</h2>" in page
    parsed = Page()
    parsed.feed(page)
    assert sum("by train.lr" in alt for alt in parsed.alts) == 1  # one plot per trait and axis


MAKE_DATA = ["make-data", "--requests", "r.jsonl", "--out", "o.jsonl", "--instruction", "x", "--keep", "spanish"]


@pytest.mark.parametrize("cmd", [["plan"], MAKE_DATA])
def test_commands_of_one_setting_refuse_a_grid_of_several(tmp_path, monkeypatch, cmd):
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "g.yaml"
    f.write_text(GRID + "models: [toy, smollm2-135m]\n")
    result = CliRunner().invoke(main, [cmd[0], str(f), *cmd[1:]])
    assert result.exit_code == 2, result.output
    assert "takes a sweep of one setting and one model, and this grid has 1 settings and 2 models" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.yaml"]
