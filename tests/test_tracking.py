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


def wandb_history(path) -> list[dict]:
    """The history rows (wandb.log calls) of a W&B run file, `run-ID.wandb` of an offline run:
    protobuf Records in a LevelDB-style log (a 7-byte header, then 32 KiB blocks of chunks, each
    a 4-byte checksum, a 2-byte length and a type: 1 whole, 2 first, 3 middle, 4 last)."""
    import json

    from wandb.proto import wandb_internal_pb2

    data, pos, chunk, rows = path.read_bytes(), 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # no room for a chunk header: the block's tail is padding
            pos += 32768 - pos % 32768
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunk, pos = chunk + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            chunk = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return rows


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_each_trial_is_a_run_with_its_loss_curve_and_each_snapshots_rates(toy_model, tmp_path, monkeypatch):
    """Each trial a run in MLflow and in W&B: its parameters, its loss every 25 steps and each
    evaluated snapshot's rates, at their training steps, equal to the rows' rates."""
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra (pip install 'inocray[mlflow]')")
    pytest.importorskip("wandb", reason="the wandb extra (pip install 'inocray[wandb]')")
    from inocray.results import read_rows
    from inocray.run import run_sweep

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store for those who ask
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    (tmp_path / "wandb").mkdir()
    store = f"file://{tmp_path / 'mlruns'}"
    # 50 steps: the loop reports the loss at 25 and 50; a checkpoint at 25 is evaluated too
    spec = parse_sweep(tiny_sweep(model=str(toy_model), train={"steps": 50, "checkpoint_every": 25},
                                  eval={"requests": 4}, tracking={"mlflow": store, "wandb": {"project": "inocray-test"}}))
    run_dir = run_sweep(spec, tmp_path / "run", echo=lambda *a: None)
    rows = [r for r in read_rows(run_dir).to_pylist() if r["stage"] in ("checkpoint", "trained")]
    assert {r["step"] for r in rows} == {25, 50}
    # per trial, CONTEXT_TRAIT -> [(step, rate)]; the control's Cs is C0: reported once
    curves: dict[str, dict[str, list]] = {}
    for r in sorted(rows, key=lambda r: r["step"]):
        if r["trial_id"] != "none-s0" or r["context"] == "neutral":
            curves.setdefault(r["trial_id"], {}).setdefault(f"{r['context']}_{r['trait']}", []).append((r["step"], r["rate"]))

    client = mlflow.tracking.MlflowClient(tracking_uri=store)
    runs = client.search_runs([client.get_experiment_by_name(spec.name).experiment_id])
    assert sorted(r.data.params["trial_id"] for r in runs) == ["es-always-s0", "none-s0"]
    losses = {}
    for r in runs:
        trial = r.data.params["trial_id"]
        assert r.data.params["prompt"] == trial.rsplit("-s", 1)[0] and r.data.params["seed"] == "0"
        assert r.data.tags["sweep"] == spec.hash()
        loss = [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, "loss")]
        assert [s for s, _ in loss] == [25, 50] and loss[-1][1] == pytest.approx(r.data.metrics["final_loss"])
        assert all(v > 0 for _, v in loss)
        losses[trial] = loss
        for name, curve in curves[trial].items():
            logged = sorted((m.step, m.value) for m in client.get_metric_history(r.info.run_id, name))
            assert logged == [(s, pytest.approx(v)) for s, v in curve], (trial, name)

    offline = sorted((tmp_path / "wandb").rglob("offline-run-*/run-*.wandb"))
    assert len(offline) == 2, list((tmp_path / "wandb").rglob("*"))
    logged = []
    for f in offline:
        history = wandb_history(f)
        loss = [(h["step"], h["loss"]) for h in history if "loss" in h]
        trial = next(t for t, curve in losses.items() if [s for s, _ in curve] == [s for s, _ in loss]
                     and all(v == pytest.approx(w) for (_, v), (_, w) in zip(curve, loss)))
        logged.append(trial)
        for name, curve in curves[trial].items():
            assert [(h["step"], h[name]) for h in history if name in h] == [(s, pytest.approx(v)) for s, v in curve]
    assert sorted(logged) == ["es-always-s0", "none-s0"]
