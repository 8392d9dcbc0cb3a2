"""A real grid sweep at tiny scale: two cells (two learning rates) in one Tune run, one engine."""

import pytest
from conftest import tiny_sweep

from inocray.results import _rows as store
from inocray.analysis import fit_rows
from inocray.run import run_progress
from inocray.run import run_sweep
from inocray.config import parse_sweep


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_a_two_cell_grid_runs_in_one_sweep_fits_per_cell_and_resumes_per_cell(toy_model, tmp_path):
    spec = parse_sweep(tiny_sweep(name="tiny-grid", model=str(toy_model), grid={"train.lr": [1e-4, 3e-3]}))
    cells = ["lr=0.0001", "lr=0.003"]
    lines = []
    run_dir = run_sweep(spec, tmp_path / "run", echo=lines.append)
    rows = store.read_rows(run_dir).to_pylist()
    trained = [r for r in rows if r["stage"] == "trained"]
    # Interleaved plan order, ids naming their cell; rows carry the cell, model and axis value.
    assert sorted({r["trial_id"] for r in trained}) == sorted(f"{c},{p}-s0" for c in cells for p in ("es-always", "none"))
    assert {(r["cell"], r["train.lr"]) for r in trained} == {("lr=0.0001", 1e-4), ("lr=0.003", 3e-3)}
    assert {r["model"] for r in rows} == {str(toy_model)}
    # The base model is measured once for both cells (they share setting, model, placement).
    assert {r["trial_id"] for r in rows if r["stage"] == "base"} == {"base"}
    assert {r["cell"] for r in rows if r["stage"] == "base"} == {""}
    # The fit runs per cell.
    fit = fit_rows(store.read_rows(run_dir), n_boot=100)
    assert sorted({(t.cell, t.trait) for t in fit.traits}) == [(c, t) for c in cells for t in ("caps", "spanish")]
    assert all(t.prompt("es-always").inoculation_effect is not None for t in fit.traits)
    # The larger learning rate teaches more Spanish to the no-prompt control in 8 steps.
    none = {t.cell: t.prompt("none").neutral.value for t in fit.traits if t.trait == "spanish"}
    assert none["lr=0.003"] > none["lr=0.0001"], none

    # status: done/total per cell; a lost trial of one cell is the only one rerun.
    progress = run_progress(run_dir)
    assert "  cell lr=0.0001: 2 of 2" in progress.to_text() and progress.base_measured
    lost = store.rows_path(run_dir, "lr=0.003,none-s0")
    lost.unlink()
    assert "  cell lr=0.003: 1 of 2" in run_progress(run_dir).to_text()
    before = {p.name: p.stat().st_mtime_ns for p in (run_dir / "rows").iterdir()}
    lines.clear()
    run_sweep(spec, run_dir, echo=lines.append)
    assert "4 trials, 3 already done" in lines[0], lines
    after = {p.name: p.stat().st_mtime_ns for p in (run_dir / "rows").iterdir()}
    assert {n for n in after if after[n] != before.get(n)} == {lost.name}
