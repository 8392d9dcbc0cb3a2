"""One driver per run directory: the lease is claimed atomically (a local file, or S3 with
conditional writes), a second driver is refused in one sentence naming the first, and takes
over only a stale lease or when told to; each run's engines have a Serve app of their own."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import yaml
from click.testing import CliRunner
from conftest import tiny_sweep

from inocray.cli import main
from inocray.config import make_plan, parse_sweep
from inocray.errors import InputError
from inocray.results import LEASE, _lease, hold, storage
from inocray.run import _launch
from inocray.run._engines import app_name

HOLDER = """
import sys, time
from inocray.results import hold
with hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def no_engines(monkeypatch):
    """A driver that got past the lease would start its engines: fail instead of starting Ray."""
    def engines(*a, **kw):
        raise AssertionError("a second driver went on to start its engines")
    monkeypatch.setattr(_launch, "engines", engines)


@pytest.mark.usefixtures("no_engines")
def test_a_second_driver_is_refused_naming_the_first_until_it_is_gone(tmp_path, toy_model):
    run_dir = tmp_path / "run"
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(yaml.safe_dump(tiny_sweep(model=str(toy_model))))
    first = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert first.stdout.readline() == "held\n"
        result = CliRunner().invoke(main, ["run", str(sweep), "--run-dir", str(run_dir)])
        assert result.exit_code == 2, result.output
        owner = f"{_lease._user()}@{socket.gethostname()}:{first.pid}"
        assert result.output.startswith(f"error: {run_dir} is being run by {owner} (heartbeat ")
        assert result.output.endswith(" s ago); wait for it to end, or pass --take-over if that driver is gone\n")
        assert result.output.count("\n") == 1
        assert json.loads((run_dir / LEASE).read_text())["pid"] == first.pid  # the first one's lease, untouched
        assert sorted(p.name for p in run_dir.iterdir()) == [LEASE, "sweep.json"]  # nothing else written
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # Its process is gone from this host: the lease is stale, the next driver takes it over.
    lines = []
    with hold(run_dir, echo=lines.append):
        assert json.loads((run_dir / LEASE).read_text())["pid"] == os.getpid()
    assert lines == [f"taking over {run_dir} from {owner}"]
    assert not (run_dir / LEASE).exists()  # given back at the end


@pytest.fixture(params=["local", "s3"])
def where(request, tmp_path):
    return str(request.getfixturevalue("s3")) if request.param == "s3" else tmp_path / "run"


def test_take_over_replaces_a_live_lease_and_its_holder_finds_out(where):
    first = hold(where)
    with pytest.raises(InputError, match=r"is being run by .*:%d \(heartbeat [01] s ago\)" % os.getpid()):
        hold(where)
    lines = []
    with hold(where, take_over=True, echo=lines.append) as second:
        assert lines == [f"taking over {where} from {first.record['owner']}"]
        with pytest.raises(_lease.Lost):
            first.renew()
        second.renew()  # still the second's
        assert _lease.read(where)["token"] == second.record["token"]
        first.__exit__(None, None, None)  # the first driver ends: it gives back nothing of the second's
        assert _lease.read(where)["token"] == second.record["token"]
    assert _lease.read(where) is None


def test_a_lease_without_a_heartbeat_for_long_is_taken_over(where):
    gone = {"owner": "ann@elsewhere:7", "host": "elsewhere", "pid": 7, "token": "t",
            "heartbeat": time.time() - _lease.STALE_S + 5}
    storage.make_dir(where)
    storage.write_atomically(storage.join(where, LEASE), lambda tmp: open(tmp, "w").write(json.dumps(gone)))
    with pytest.raises(InputError, match=r"is being run by ann@elsewhere:7 \(heartbeat 5[5-9] s ago\)"):
        hold(where)
    gone["heartbeat"] -= 10
    storage.write_atomically(storage.join(where, LEASE), lambda tmp: open(tmp, "w").write(json.dumps(gone)))
    lines = []
    with hold(where, echo=lines.append):
        assert lines == [f"taking over {where} from ann@elsewhere:7"]


def test_drivers_claiming_at_once_get_one_lease(where):
    storage.make_dir(where)
    won, refused, start = [], [], threading.Barrier(6)

    def claim():
        start.wait()
        try:
            won.append(hold(where))
        except InputError:
            refused.append(1)

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(won), len(refused)) == (1, 5)
    assert _lease.read(where)["token"] == won[0].record["token"]
    won[0].__exit__(None, None, None)


def test_the_heartbeat_renews_the_lease(tmp_path, monkeypatch):
    monkeypatch.setattr(_lease, "HEARTBEAT_S", 0.05)
    with hold(tmp_path) as lease:
        first = _lease.read(tmp_path)["heartbeat"]
        time.sleep(0.3)
        assert _lease.read(tmp_path)["heartbeat"] > first
        assert lease.thread.is_alive()


def test_two_runs_of_one_sweep_have_engines_of_their_own():
    spec = parse_sweep(tiny_sweep(), source="tiny.yaml", check_model=False)
    plan = make_plan(spec)
    a, b = app_name(plan, spec.model, "/runs/a"), app_name(plan, spec.model, "s3://bucket/runs/a")
    assert a != b and a.startswith(f"inocray-{spec.hash()}-") and b.startswith(f"inocray-{spec.hash()}-")
    assert app_name(plan, spec.model, "/runs/a") == a  # from any process: the same name
