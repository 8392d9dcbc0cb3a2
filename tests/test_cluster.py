"""The cluster definitions, and sweeps submitted as Ray Jobs to a real Ray head on 127.0.0.1."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import free_ports, result_row

from inocray.results import _rows as store
from inocray.cli import main
from inocray.run._jobs import CLUSTER_RUNS_ROOT, TERMINAL

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_FILES = [ROOT / "cluster.yaml", ROOT / "docs" / "cluster-local.yaml"]
TOY = ROOT / "sweeps" / "toy.yaml"


# --- cluster definitions -----------------------------------------------------------------


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_cluster_file_passes_rays_validation(path):
    """The file passes the checks `ray up` makes before it talks to a cloud.

    `ray up` loads the YAML and calls `ray.autoscaler._private.commands._bootstrap_config`,
    which does, in order:
      1. `util.prepare_config`: merges the provider's defaults.yaml (a file in the Ray
         package), rewrites a `provider: local` config into its single node type
         (`local.config.prepare_local`), merges setup commands, checks docker, fills in
         min/max workers per node type. Local, no network.
      2. the provider's `fillout_available_node_types_resources`: on AWS this asks EC2
         what an instance type has, but only for node types without `resources`; ours
         state them (the schema requires them for every provider but AWS and Kubernetes).
      3. `util.validate_config`: the JSON schema ray/autoscaler/ray-schema.json (unknown
         keys, types, required fields), plus head_node_type being a node type and the sum
         of min_workers not exceeding max_workers. Local, no network.
      4. the provider's `bootstrap_config`: on AWS this creates or looks up the IAM role,
         key pair, subnets and security group, i.e. calls the cloud. Skipped here.
    So steps 1 and 3 are exactly Ray's own validation without any cloud call.
    """
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load(path.read_text())
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)

    setup = " && ".join(config["setup_commands"])
    assert "./install.sh gpu" in setup  # the gpu extra at setup.cfg's pinned versions
    assert CLUSTER_RUNS_ROOT in setup  # run directories on the shared mount `submit` defaults to
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])


def test_cloud_cluster_has_a_gpu_free_head_and_gpu_workers_from_zero():
    from ray.autoscaler._private.util import prepare_config

    config = prepare_config(yaml.safe_load(CLUSTER_FILES[0].read_text()))
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert any(t["resources"].get("GPU", 0) >= 1 and t["min_workers"] == 0 for t in workers)


def test_a_typo_in_a_cluster_file_is_caught():
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(CLUSTER_FILES[0].read_text())
    config["available_node_types"]["gpu"]["min_wrokers"] = 1
    with pytest.raises(jsonschema.ValidationError, match="min_wrokers"):
        validate_config(prepare_config(config))


# --- commands that need no cluster -------------------------------------------------------


def test_status_of_a_run_directory(tmp_path):
    from inocray.run import load_cluster_spec
    from inocray.results import claim

    spec = load_cluster_spec(TOY)
    run_dir = tmp_path / "run"
    claim(spec, run_dir)
    row = dict(sweep_hash=spec.hash(), setting="toy", trial_id="es-always-s0", stage="trained",
               prompt_id="es-always", prompt_text="x", prompt_role="inoculation", seed=0, step=150,
               context="neutral", trait="spanish", desired=False, rate=0.5, n=8)
    store.write_rows(run_dir, "es-always-s0", [row])

    result = CliRunner().invoke(main, ["status", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert f"sweep toy ({spec.hash()})" in result.output
    assert "trials done: 1 of 16" in result.output  # (6 prompts + none + 1 irrelevant) x 2 seeds
    assert "base model measured: no" in result.output


def test_status_away_from_the_cluster_needs_no_data_files(tmp_path):
    # The sweep's data and model exist only on the cluster; trial ids do not depend on them.
    from inocray.config import parse_sweep
    from inocray.results import claim

    data = yaml.safe_load((ROOT / "sweeps" / "spanish_caps-fixture.yaml").read_text())
    data |= {"seeds": [0, 1], "model": "/mnt/shared/models/base",
             "data": {"train": "/mnt/shared/data/train.jsonl", "eval": "/mnt/shared/data/eval.jsonl"}}
    spec = parse_sweep(data, source="cluster.yaml", check_model=False)
    run_dir = tmp_path / "run"
    claim(spec, run_dir)
    store.write_rows(run_dir, "none-s1", [result_row(sweep_hash=spec.hash(), trial_id="none-s1")])

    result = CliRunner().invoke(main, ["status", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "trials done: 1 of 4" in result.output  # (es-always + none) x 2 seeds
    assert "left: es-always-s0, es-always-s1, none-s0\n" in result.output

    # A setting of the sweep's own, installed only on the cluster: the plan needs it no more.
    record = json.loads((run_dir / "sweep.json").read_text())
    record["spec"]["setting"] = "labcode.cluster_only_setting"
    (run_dir / "sweep.json").write_text(json.dumps(record))
    result = CliRunner().invoke(main, ["status", str(run_dir)])
    assert result.exit_code == 0 and "trials done: 1 of 4" in result.output, result.output


def test_remote_commands_fail_in_one_sentence_without_a_cluster(tmp_path):
    port = free_ports(1)[0]  # nothing listens there
    runner = CliRunner()
    for args in (["submit", str(TOY)], ["status", "some-job"], ["logs", "some-job"], ["stop", "some-job"]):
        result = runner.invoke(main, [*args, "--address", f"http://127.0.0.1:{port}"])
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("error: cannot reach a Ray cluster at"), result.output
        assert len(result.output.strip().splitlines()) == 1

    bad = tmp_path / "bad.yaml"
    bad.write_text(TOY.read_text().replace("seeds: [0, 1]", "seeds: [0, one]"))
    result = runner.invoke(main, ["submit", str(bad), "--address", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 2 and "field 'seeds[1]' must be an integer" in result.output

    result = runner.invoke(main, ["status", "some-job"])
    assert result.exit_code == 2 and "not a run directory" in result.output


def test_a_model_directory_need_only_exist_on_the_cluster(tmp_path):
    from inocray.errors import InputError
    from inocray.run import load_cluster_spec
    from inocray.config import load_sweep

    sweep = tmp_path / "remote.yaml"
    sweep.write_text(TOY.read_text().replace("model: toy", "model: /mnt/shared/models/llama"))
    with pytest.raises(InputError, match="field 'model'"):  # run here, the model must be here
        load_sweep(sweep)
    assert load_cluster_spec(sweep).model == "/mnt/shared/models/llama"
    sweep.write_text(sweep.read_text().replace("- es-hint", "- es-nope"))  # the rest is checked here
    with pytest.raises(InputError, match="field 'prompts\\[0\\]'"):
        load_cluster_spec(sweep)


def test_the_gpu_toy_sweep_of_operations_md_meets_the_error_it_shows():
    """operations.md's toy-gpu.yaml (toy.yaml plus its YAML block) loads as `submit` loads it,
    and on one GPU the resource check says the sentence the page shows after it."""
    from inocray.config import make_plan, parse_sweep
    from inocray.run import _resources as resources

    page = (ROOT / "docs" / "operations.md").read_text()
    block = yaml.safe_load(page.split("add\n\n```yaml\n", 1)[1].split("```", 1)[0])
    shown = page.split("on a single GPU with the\nsettings above:\n\n```\nerror: ", 1)[1].split("\n```", 1)[0]
    data = yaml.safe_load(TOY.read_text())
    data["train"] |= block.pop("train")  # "merge use_gpu into the existing train: block"
    data |= block
    plan = make_plan(parse_sweep(data, "toy-gpu.yaml", check_model=False))
    assert resources.problem({"CPU": 8.0, "GPU": 1.0}, plan) == shown
    assert resources.problem({"CPU": 8.0, "GPU": 2.0}, plan) is None


# --- a real Ray head ---------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    address: str  # the dashboard's URL
    env: dict  # environment of the head, and of clients that hold its token
    token: str


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head of its own on 127.0.0.1, which must not disturb any other Ray on the machine.

    The rest of the suite runs a `ray.init` session of its own (conftest.py), and the machine
    may run other Rays (a benchmark, a user's session). So this head:
      - listens on free ports for everything (GCS, dashboard, agents, client server, metrics,
        object and node managers; workers on OS-chosen ports), never Ray's defaults;
      - keeps its sockets, logs and `ray_current_cluster` file in a temp dir of its own
        (`--temp-dir`), so `ray.init()` elsewhere never finds and joins it;
      - runs as `ray start --head --block` in a new session. It is stopped with SIGTERM to
        that process, which makes Ray shut down the processes of this node only; anything
        left is killed by pid from a snapshot of the process tree. `ray stop` is never used:
        it kills every Ray process on the machine.
      - uses token authentication with a token file of its own (RAY_AUTH_TOKEN_PATH), not
        ~/.ray/auth_token, so that the test is the same on any machine and also checks that
        the job client sends the token.
    Client commands run as subprocesses with the head's environment: Ray reads RAY_AUTH_MODE
    once per process, and the pytest process may already hold a Ray session of its own.
    """
    temp_dir = Path(tempfile.mkdtemp(prefix="inocray-head-", dir="/tmp"))  # short: socket paths
    token = secrets.token_hex(32)
    (temp_dir / "token").write_text(token)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(temp_dir / "token"),
        RAY_USAGE_STATS_ENABLED="0",
        PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),  # `inocray` in jobs
    )
    gcs, dash, client, agent, agent_grpc, env_agent, metrics, node_mgr, obj_mgr = free_ports(9)
    cmd = [
        str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1", "--port", str(gcs),
        "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
        "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
        "--dashboard-agent-grpc-port", str(agent_grpc), "--runtime-env-agent-port", str(env_agent),
        "--metrics-export-port", str(metrics), "--node-manager-port", str(node_mgr),
        "--object-manager-port", str(obj_mgr), "--min-worker-port", "0", "--max-worker-port", "0",
        "--num-cpus", "1", "--object-store-memory", str(100 * 2**20),
        "--temp-dir", str(temp_dir), "--disable-usage-stats",
    ]
    head = Head(f"http://127.0.0.1:{dash}", env, token)
    with running_head(cmd, head, temp_dir):
        yield head


@contextlib.contextmanager
def running_head(cmd: list[str], head: Head, temp_dir: Path):
    """Run `ray start ... --block` (cmd) until the block ends; then stop it and remove temp_dir."""
    log = open(temp_dir / "ray-start.log", "w")
    proc = subprocess.Popen(cmd, env=head.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        _wait_until_ready(head, proc, temp_dir / "ray-start.log", timeout=120)
        yield
    finally:
        _stop_head(proc)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_submit_validate_only_then_status_and_logs(ray_head):
    out = _inocray(ray_head, "submit", str(TOY), "--validate-only")
    job_id = out.split("submitted job ", 1)[1].split(":", 1)[0]
    assert f"dashboard: {ray_head.address}/#/jobs/{job_id}" in out

    assert _wait_for_job(ray_head, job_id, timeout=90) == "SUCCEEDED"
    status = _inocray(ray_head, "status", job_id)
    assert f"job {job_id}: SUCCEEDED" in status
    assert "entrypoint: inocray validate toy.yaml" in status
    assert "toy.yaml: valid sweep 'toy'" in _inocray(ray_head, "logs", job_id)
    assert "toy.yaml: valid sweep 'toy'" in _inocray(ray_head, "logs", job_id, "--follow")  # ends: job done


@pytest.mark.slow
def test_stop_a_running_job(ray_head):
    code = ("from inocray.run._jobs import submit_entrypoint;"
            f"print(submit_entrypoint({ray_head.address!r}, 'sleep 60').job_id)")
    job_id = _run([sys.executable, "-c", code], ray_head.env).stdout.strip()
    assert _wait_for_job(ray_head, job_id, timeout=60, until=("RUNNING",)) == "RUNNING"
    assert f"job {job_id}: STOPPED" in _inocray(ray_head, "stop", job_id)


@pytest.mark.slow
def test_cluster_errors_are_one_sentence(ray_head):
    result = _run([sys.executable, "-m", "inocray.cli", "status", "no-such-job", "--address", ray_head.address],
                  ray_head.env, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: the Ray cluster at {ray_head.address} has no job no-such-job"

    no_token = {**ray_head.env, "RAY_AUTH_MODE": "disabled"}
    result = _run([sys.executable, "-m", "inocray.cli", "submit", str(TOY), "--address", ray_head.address],
                  no_token, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: the Ray cluster at {ray_head.address} wants its auth token")
    assert len(result.stderr.strip().splitlines()) == 1


# --- the cluster lets in only its own ------------------------------------------------------
# A head started as cluster.yaml starts it refuses a client without its token. The head gets
# what the cluster file gives a node: the environment its setup commands export
# (RAY_AUTH_MODE), the token where its file_mounts put it (~/.ray/auth_token, under a HOME of
# the test's own), and the flags of its `ray start --head` line; only the ports (free ones),
# the temp dir and the node's address are the test's, as in ray_head above.

CLUSTER = yaml.safe_load((ROOT / "cluster.yaml").read_text())
LOCAL_PORTS = ("--port", "--object-manager-port", "--autoscaling-config")  # replaced or meaningless here
PORTS = ("--port", "--dashboard-port", "--ray-client-server-port", "--dashboard-agent-listen-port",
         "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port", "--node-manager-port",
         "--object-manager-port")


def _exports() -> dict:
    setup = " ".join(CLUSTER["setup_commands"])
    return dict(re.findall(r"export (RAY_\w+)=(\w+)", setup))


def _head_flags() -> list[str]:
    (line,) = [c for c in CLUSTER["head_start_ray_commands"] if "ray start --head" in c]
    flags = line.split("ray start", 1)[1].split()
    return [f for f in flags if not f.startswith(LOCAL_PORTS)]


@pytest.fixture(scope="module")
def cluster_head():
    temp_dir = Path(tempfile.mkdtemp(prefix="inocray-auth-", dir="/tmp"))
    home = temp_dir / "home"
    token_dest = [dest for dest in CLUSTER["file_mounts"] if dest.endswith("auth_token")]
    assert token_dest == ["~/.ray/auth_token"], "cluster.yaml must copy the cluster's token to every node"
    token = secrets.token_hex(32)
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(token)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(_exports(), HOME=str(home), RAY_USAGE_STATS_ENABLED="0")
    ports = dict(zip(PORTS, free_ports(len(PORTS))))  # every port of the head a free one of its own
    cmd = [str(Path(sys.executable).parent / "ray"), "start", *_head_flags(), "--block", "--node-ip-address",
           "127.0.0.1", *[a for flag, port in ports.items() for a in (flag, str(port))], "--min-worker-port", "0",
           "--max-worker-port", "0", "--num-cpus", "1", "--object-store-memory", str(100 * 2**20),
           "--temp-dir", str(temp_dir)]
    head = Head(f"http://127.0.0.1:{ports['--dashboard-port']}", env, token)
    with running_head(cmd, head, temp_dir):
        yield head, f"127.0.0.1:{ports['--port']}"


LIST_JOBS = "from ray.job_submission import JobSubmissionClient as C; print(len(C({!r}).list_jobs()))"
JOIN = "import ray; ray.init(address={!r}); print(ray.cluster_resources().get('CPU'))"


@pytest.mark.slow
def test_a_client_without_the_token_is_refused_and_one_with_it_is_let_in(cluster_head, tmp_path):
    head, gcs = cluster_head
    stranger = {k: v for k, v in head.env.items() if not k.startswith("RAY_")}
    stranger.update(HOME=str(tmp_path), RAY_AUTH_MODE="disabled")  # no token, and none on its disk
    holder = {**stranger, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(Path(head.env["HOME"]) / ".ray" /
                                                                                  "auth_token")}
    for code in (LIST_JOBS.format(head.address), JOIN.format(gcs)):
        refused = _run([sys.executable, "-c", code], stranger, check=False)
        assert refused.returncode != 0, (code, refused.stdout)
        assert re.search(r"(?i)auth|token|unauthenticated|401|403", refused.stderr), refused.stderr[-2000:]
        _run([sys.executable, "-c", code], holder)  # the same request with the token: let in


# --- helpers -----------------------------------------------------------------------------


def _run(cmd: list[str], env: dict, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    if check:
        assert result.returncode == 0, f"{cmd}: {result.stdout}{result.stderr}"
    return result


def _inocray(head: Head, *args: str) -> str:
    return _run([sys.executable, "-m", "inocray.cli", *args, "--address", head.address], head.env).stdout


def _api(head: Head, path: str) -> tuple[int, dict | list | None]:
    """GET the dashboard's REST API directly (with the token): cheap polling, no Ray client."""
    import requests

    try:
        r = requests.get(head.address + path, headers={"Authorization": f"Bearer {head.token}"}, timeout=5)
    except requests.RequestException:
        return 0, None
    return r.status_code, (r.json() if r.status_code == 200 else None)


def _wait_until_ready(head: Head, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if _api(head, "/api/jobs/")[0] == 200:
            return
        time.sleep(1)
    pytest.fail(f"the Ray head was not ready after {timeout} s:\n{log.read_text()[-3000:]}")


def _wait_for_job(head: Head, job_id: str, timeout: float, until: tuple[str, ...] = TERMINAL) -> str:
    deadline, status = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        _, info = _api(head, f"/api/jobs/{job_id}")
        status = info["status"] if info else status
        if status in until or status in TERMINAL:
            return status
        time.sleep(1)
    _, logs = _api(head, f"/api/jobs/{job_id}/logs")
    return f"{status} after {timeout} s; logs: {json.dumps(logs)[-2000:]}"


def _stop_head(proc: subprocess.Popen) -> None:
    """Stop this head's processes, and only those."""
    import psutil

    try:
        tree = psutil.Process(proc.pid).children(recursive=True)  # raylet's workers included
    except psutil.NoSuchProcess:
        tree = []
    proc.send_signal(signal.SIGTERM)  # `ray start --block` shuts its node down
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    _, alive = psutil.wait_procs(tree, timeout=10)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
