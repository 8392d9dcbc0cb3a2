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
            if t == trial:
                assert r.data.metrics[f"{context}_{trait}"] == pytest.approx(rate), (trial, context, trait)
        assert r.data.metrics["final_loss"] > 0

    offline = sorted((tmp_path / "wandb").rglob("offline-run-*/run-*.wandb"))
    assert len(offline) == 2, list((tmp_path / "wandb").rglob("*"))
    assert all(f.stat().st_size > 0 for f in offline)
