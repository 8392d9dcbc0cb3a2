"""The engine and one trial must fit the Ray cluster; a larger max_concurrent_trials only waits."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import tiny_sweep

from inocray.config import Holds, make_plan, parse_spec
from inocray.errors import InputError
from inocray.run import _resources as resources

ROOT = Path(__file__).resolve().parents[1]


def _spec(**fields):
    """The plan of the toy sweep with `fields` changed: what the resource check reads (seeds,
    training and evaluation at the sweep file's defaults unless `fields` sets them)."""
    return make_plan(parse_spec(tiny_sweep(name="fit", seeds=None, train=None, eval=None) | fields))


GPU_SWEEP = {"train": {"use_gpu": True}, "engine": {"num_gpus": 1}}  # operations.md's toy-gpu.yaml


def test_the_default_sweep_fits_two_cpus_with_three_trials_beside_the_engine():
    spec = _spec()  # engine 0.5 CPU; a trial 0.01 + one worker at 0.49
    assert resources.problem({"CPU": 2.0}, spec) is None
    assert resources.concurrent_trials({"CPU": 2.0}, spec) == 3


def test_engine_gpu_and_trial_gpu_on_one_gpu_is_one_sentence_saying_what_to_change():
    spec = _spec(**GPU_SWEEP)
    found = resources.problem({"CPU": 8.0, "GPU": 1.0}, spec)
    assert found == ("the evaluation engine (1 GPU) and one trial (1 GPU) need 2 GPUs at once but the Ray "
                     "cluster has 1 GPU: set engine.num_gpus to at most 0, set train.use_gpu: false, "
                     "or use a cluster with more GPUs")
    assert resources.problem({"CPU": 8.0, "GPU": 2.0}, spec) is None
    assert "has 0 GPUs: set engine.num_gpus: 0 and train.use_gpu: false" in resources.problem({"CPU": 8.0}, spec)


def test_more_workers_than_cpus_fails_and_names_the_most_that_fit():
    spec = _spec(train={"num_workers": 4, "batch_size": 8})  # 0.5 + 0.01 + 4 x 0.49 = 2.47
    found = resources.problem({"CPU": 2.0}, spec)
    assert found.startswith("the evaluation engine (0.5 CPU) and one trial (1.97 CPUs) need 2.47 CPUs at once")
    assert "lower train.num_workers to 3, set train.cpus_per_worker to at most 0.37" in found
    assert resources.concurrent_trials({"CPU": 2.0}, spec) == 0


def test_a_judge_and_full_fine_tuning_count_their_own_engines():
    spec = _spec(eval={"judge_model": "/models/judge"}, engine={"num_gpus": 1},
                 train={"method": "full", "zero_stage": 3})
    assert spec.placement.engines == Holds(0.5, 2)  # the engine and the judge app
    assert spec.placement.trial.gpu == 1  # the trained model's own engine app
    assert "need 3 GPUs" in resources.problem({"CPU": 4.0, "GPU": 2.0}, spec)
    # A long-lived worker group keeps its GPUs while the trial's own engine evaluates.
    gpu = _spec(engine={"num_gpus": 1}, train={"method": "full", "use_gpu": True, "num_workers": 2})
    assert gpu.placement.trial.gpu == 3


def test_every_engine_replica_counts():
    spec = _spec(engine={"replicas": 3, "num_gpus": 1}, train={"use_gpu": True}, eval={"judge_model": "/models/judge"})
    assert spec.placement.engines == Holds(1.5, 4)  # 3 replicas x (0.5 CPU, 1 GPU), the judge 1 GPU
    found = resources.problem({"CPU": 8.0, "GPU": 4.0}, spec)
    assert "engine (4 GPUs) and one trial (1 GPU) need 5 GPUs" in found
    assert "set engine.num_gpus to at most 0.75" in found  # (4 - 1) GPUs over 4 replicas
    assert resources.problem({"CPU": 8.0, "GPU": 5.0}, spec) is None
    assert resources.concurrent_trials({"CPU": 2.0}, _spec(engine={"replicas": 2})) == 2  # 1 CPU left, 0.5 a trial


def test_the_autoscalers_node_types_count_at_their_max_workers():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    most = resources.autoscaler_max(config)
    assert most == {"CPU": 16, "GPU": 4}  # head CPU 0, plus 4 GPU nodes of {CPU 4, GPU 1}
    assert resources.problem(most, _spec(**GPU_SWEEP), at_most=True) is None
    del config["available_node_types"]["gpu"]["resources"]
    assert resources.autoscaler_max(config) is None


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")  # 2 CPUs, no GPU
def test_check_reads_the_running_cluster(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "BOOTSTRAP_CONFIG", tmp_path / "absent.yaml")
    with pytest.raises(InputError, match="lower train.num_workers to 3"):
        resources.check(_spec(train={"num_workers": 4, "batch_size": 8}), echo=print)
    lines: list[str] = []
    resources.check(_spec(max_concurrent_trials=8), echo=lines.append)
    assert lines == ["the Ray cluster holds the engine and 3 trial(s) at once, so 3 run at a time "
                     "(max_concurrent_trials is 8)"]

    # The head of a `ray up` cluster: GPU nodes that scale from zero count at their maximum.
    monkeypatch.setattr(resources, "BOOTSTRAP_CONFIG", ROOT / "cluster.yaml")
    lines.clear()
    resources.check(_spec(**GPU_SWEEP), echo=lines.append)
    assert lines == []
    # Node types that do not state their resources: only a warning.
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    del config["available_node_types"]["gpu"]["resources"]
    (tmp_path / "bootstrap.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setattr(resources, "BOOTSTRAP_CONFIG", tmp_path / "bootstrap.yaml")
    resources.check(_spec(**GPU_SWEEP), echo=lines.append)
    assert len(lines) == 1 and lines[0].startswith("warning: the evaluation engine (1 GPU)")


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")  # 2 CPUs, no GPU
def test_a_sweep_whose_engine_cannot_be_placed_fails_before_asking_for_it(toy_model, tmp_path, monkeypatch):
    """An engine on a GPU the cluster lacks would wait forever in Serve: the check runs first."""
    from ray import serve

    from inocray.run import run_sweep

    monkeypatch.setattr(resources, "BOOTSTRAP_CONFIG", tmp_path / "absent.yaml")
    spec = parse_spec(tiny_sweep(name="nogpu", model=str(toy_model), train=None, eval=None) | GPU_SWEEP)
    lines: list[str] = []
    with pytest.raises(InputError, match="the Ray cluster has 0 GPUs: set engine.num_gpus: 0"):
        run_sweep(spec, tmp_path / "run", echo=lines.append)
    assert not any("starting the evaluation engine" in line for line in lines)
    assert not any(app.startswith(f"inocray-{spec.hash()}") for app in serve.status().applications)
