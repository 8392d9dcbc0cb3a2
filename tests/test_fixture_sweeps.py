"""Every research setting runs end to end on its shipped fixture with the toy model.

The toy model knows none of the fixtures' words, so the rates mean nothing; what is tested is
the path: data files read and validated, Tune trials trained and evaluated through Serve (a
judge where the setting needs one, the sandbox for code), one rows file per trial.
"""

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from inocray import store
from inocray.cli import main

SWEEPS = sorted((Path(__file__).parent.parent / "sweeps").glob("*-fixture.yaml"))


def test_every_setting_has_a_fixture_sweep():
    from inocray.settings import BUILTIN

    assert {f.name.removesuffix("-fixture.yaml") for f in SWEEPS} == set(BUILTIN) - {"toy"}


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("sweep_file", SWEEPS, ids=lambda f: f.name.removesuffix("-fixture.yaml"))
def test_fixture_sweep_runs_end_to_end(sweep_file, toy_model, tmp_path):
    data = yaml.safe_load(sweep_file.read_text())
    data["model"] = str(toy_model)  # the suite's tiny toy model instead of building the full one
    sweep = tmp_path / sweep_file.name
    sweep.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "run"

    result = CliRunner().invoke(main, ["run", str(sweep), "--run-dir", str(run_dir)])

    assert result.exit_code == 0, result.output
    trials = {f"{p}-s{s}" for p in data["prompts"] + ["none"] for s in data["seeds"]}
    assert {p.stem for p in (run_dir / "rows").glob("*.parquet")} == trials | {"base", "data"}
    rows = store.read_rows(run_dir).to_pylist()
    trained = [r for r in rows if r["stage"] == "trained"]
    traits = {r["trait"] for r in rows}
    # one row per (trial, context, trait), and one per (PTST control, seed, trait)
    assert len(trained) == (len(trials) * 2 + len(data.get("ptst", [])) * len(data["seeds"])) * len(traits)
    assert all(r["n"] == 0 or 0 <= r["rate"] <= 1 for r in rows)
    ptst = [r for r in trained if r["prompt_role"] == "ptst"]  # the control's model, instructed
    assert {r["trial_id"] for r in ptst} == {f"{p}-s{s}" for p in data.get("ptst", []) for s in data["seeds"]}
    assert all(r["context"] == "prompt" for r in ptst)
