"""Two drivers of one sweep on one Ray cluster, into two run directories: each has engines of
its own, so the first to end deletes only its own and the other finishes every trial."""

import subprocess
import sys

import pytest
import yaml
from conftest import tiny_sweep, wait_for

from inocray.results import _rows as store

TRIALS = {"es-always-s0", "none-s0"}


@pytest.mark.slow
def test_two_runs_of_one_sweep_on_one_cluster_leave_each_others_engines_alone(toy_model, tmp_path, ray_session):
    import ray

    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(yaml.safe_dump(tiny_sweep(model=str(toy_model), engine={"num_cpus": 0.25},
                                               train={"cpus_per_worker": 0.2})))
    address = ray.get_runtime_context().gcs_address
    drivers = {}

    def start(name):
        log = open(tmp_path / f"{name}.log", "w")
        drivers[name] = subprocess.Popen([sys.executable, "-m", "inocray.cli", "run", str(sweep), "--run-dir",
                                          str(tmp_path / name), "--address", address], stdout=log,
                                         stderr=subprocess.STDOUT)

    def a_measured_the_base_model():
        assert drivers["a"].poll() is None, (tmp_path / "a.log").read_text()[-3000:]
        return (tmp_path / "a" / "rows" / "base.parquet").exists()

    start("a")
    wait_for(a_measured_the_base_model)  # a's engine is up and answering: b starts beside it
    start("b")
    for name, driver in drivers.items():
        assert driver.wait() == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    for name in drivers:
        text = (tmp_path / f"{name}.log").read_text()
        assert "trial(s) failed" not in text, text[-3000:]
        assert {r["trial_id"] for r in store.read_rows(tmp_path / name).to_pylist()
                if r["stage"] == "trained"} == TRIALS, text[-3000:]
