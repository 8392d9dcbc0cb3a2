"""Experiment trackers: a tiny sweep logged to a local MLflow file store and to W&B in offline
mode, read back with MLflow's client and from W&B's local run files."""

from __future__ import annotations

import pytest
from conftest import tiny_sweep

from inocray.config import parse_sweep
from inocray.errors import InputError


def test_tracking_is_not_part_of_the_sweep_and_needs_its_extra(monkeypatch):
    plain = parse_sweep(tiny_sweep(), check_model=False)
    tracked = parse_sweep(tiny_sweep(tracking={"mlflow": "file:///tmp/mlruns", "wandb": {"project": "p"}}),
                          check_model=False)
    assert tracked.hash() == plain.hash()  # a rerun with a tracker added resumes the same run directory
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(InputError, match=r"field 'tracking.mlflow' needs mlflow, which is not installed here: "
                                         r"pip install 'inocray\[mlflow\]'"):
        parse_sweep(tiny_sweep(tracking={"mlflow": "file:///tmp/mlruns"}))
    monkeypatch.setattr(importlib.util, "find_spec", real)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(InputError, match=r"field 'tracking.mlflow' names a file store \('file:///tmp/mlruns'\), which "
                                         r"MLflow 3 refuses unless MLFLOW_ALLOW_FILE_STORE=true is exported"):
        parse_sweep(tiny_sweep(tracking={"mlflow": "file:///tmp/mlruns"}))
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    parse_sweep(tiny_sweep(tracking={"mlflow": "file:///tmp/mlruns"}))


def test_each_trials_cell_prompt_role_and_seed_resolve_from_its_id():
    from ray import tune
    from ray.tune.search.variant_generator import generate_variants

    from inocray.config import make_plan
    from inocray.run._tracking import trial_params

    plan = make_plan(parse_sweep(tiny_sweep(seeds=[0, 1]), check_model=False))
    todo = [t.id for t in plan.trials]
    configs = [c for _, c in generate_variants({"trial_id": tune.grid_search(todo)} | trial_params(plan, todo))]
    assert sorted(map(tuple, (c.values() for c in configs))) == [
        ("es-always-s0", "", "es-always", "inoculation", 0), ("es-always-s1", "", "es-always", "inoculation", 1),
        ("none-s0", "", "none", "none", 0), ("none-s1", "", "none", "none", 1)]


def test_inocray_run_logs_the_fit_as_a_run_with_every_estimate_and_the_headline(tmp_path, monkeypatch):
    """`inocray run` with the sweep itself stood in for by simulated rows: the fit it prints
    goes to MLflow and W&B too."""
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra (pip install 'inocray[mlflow]')")
    pytest.importorskip("wandb", reason="the wandb extra (pip install 'inocray[wandb]')")
    import yaml
    from click.testing import CliRunner

    import inocray.run
    from inocray.analysis import fit_rows
    from inocray.analysis.simulate import PlantedTrait, simulate_rows, write_run
    from inocray.cli import main
    from inocray.run._summary import headline

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    ladder = {f"ip{i}": 0.1 + 0.2 * i for i in range(4)}
    rows = simulate_rows([PlantedTrait("spanish", k=0.6, elicitation=ladder)], dict.fromkeys(ladder, "inoculation"),
                         seeds=2, n=200, rng=0)
    monkeypatch.setattr(inocray.run, "run_sweep", lambda spec, run_dir, **kw: write_run(rows, run_dir))
    store = f"file://{tmp_path / 'mlruns'}"
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(tiny_sweep(tracking={"mlflow": store, "wandb": {"project": "inocray-test"}})))
    result = CliRunner().invoke(main, ["run", str(sweep), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    fit = fit_rows(rows)  # what `inocray run` fitted: the same rows, seed and draws

    client = mlflow.tracking.MlflowClient(tracking_uri=store)
    (run,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert run.info.run_name == f"fit-{parse_sweep(tiny_sweep()).hash()}"
    assert run.data.tags["headline"] == headline(fit.traits[0])
    slope = fit.traits[0].line.slope
    assert run.data.metrics["spanish.raw.slope"] == pytest.approx(slope.value)
    assert run.data.metrics["spanish.raw.slope.ci_low"] == pytest.approx(slope.low)
    k = next(p for p in fit.traits[0].prompts if p.prompt_id == "ip3").generalization_factor
    assert run.data.metrics["spanish.raw.generalization_factor.ip3"] == pytest.approx(k.value)
    (offline,) = tmp_path.rglob("offline-run-*/run-*.wandb")
    assert b"spanish.raw.slope" in offline.read_bytes() and b"headline" in offline.read_bytes()


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_each_trial_is_a_run_in_mlflow_and_wandb_with_the_rows_rates(toy_model, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra (pip install 'inocray[mlflow]')")
    pytest.importorskip("wandb", reason="the wandb extra (pip install 'inocray[wandb]')")
    from inocray.results import read_rows
    from inocray.run import run_sweep

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store for those who ask
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    (tmp_path / "wandb").mkdir()
    store = f"file://{tmp_path / 'mlruns'}"
    spec = parse_sweep(tiny_sweep(model=str(toy_model), train={"steps": 4}, eval={"requests": 4},
                                  tracking={"mlflow": store, "wandb": {"project": "inocray-test"}}))
    run_dir = run_sweep(spec, tmp_path / "run", echo=lambda *a: None)
    rows = read_rows(run_dir).to_pylist()
    trained = {(r["trial_id"], r["context"], r["trait"]): r["rate"] for r in rows if r["stage"] == "trained"}

    client = mlflow.tracking.MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name(spec.name)
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["trial_id"] for r in runs) == ["es-always-s0", "none-s0"]
    for r in runs:
        trial = r.data.params["trial_id"]
        assert r.data.params["prompt"] == trial.rsplit("-s", 1)[0] and r.data.params["seed"] == "0"
        assert r.data.tags["sweep"] == spec.hash()
        for (t, context, trait), rate in trained.items():
            if t == trial and (trial != "none-s0" or context == "neutral"):  # the control's Cs is C0: reported once
                assert r.data.metrics[f"{context}_{trait}"] == pytest.approx(rate), (trial, context, trait)
        assert r.data.metrics["final_loss"] > 0

    offline = sorted((tmp_path / "wandb").rglob("offline-run-*/run-*.wandb"))
    assert len(offline) == 2, list((tmp_path / "wandb").rglob("*"))
    assert all(f.stat().st_size > 0 for f in offline)
