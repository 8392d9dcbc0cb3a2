"""Sweeps on a Ray cluster of three nodes on this machine: a head without CPUs (as cluster.yaml's)
and two worker nodes, started with Ray's own multi-node helper (`ray.cluster_utils.Cluster`).

Every sweep goes in through `inocray submit` (a Ray Job whose driver runs on the head), with
its run directory on a path every node reaches (a shared file system, here one machine's disk)
or on S3 (the suite's in-process server). The rows name the node whose training group trained
each trial, and each engine replica notes its node in `logs/engine-REPLICA.log`.

The sizes place the work: a worker node has 2 CPUs, an engine replica takes 0.5 and a training
group (one worker) 0.9. Serve spreads the two replicas over the two nodes, which then leave
1.5 CPUs each: room for one group a node, never two. After a node is lost, the survivor has
room for the lost replica again (0.5 + 0.9 + 0.5) but not for a second group, so the lost
node's job must go to the survivor's group (training._workers).

Where a run must be stopped at a known point (a node or the driver killed while a trial
trains), one trial's log is a pipe this test reads (conftest.HeldLog): after its start line
the test stops reading, and the trial's rank 0 waits at its next line, after the checkpoint of
step 20 and before any later one (checkpoints every 10 steps, log lines at steps 25 and 40). The
trial's trainable writes to the same log (a line for each snapshot it evaluates) and may wait
there too: a test that lets the run go on after the kill reads on (`release`), never leaving a
writer at a pipe no one reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from conftest import HeldLog, free_ports, processes_with, tiny_sweep, wait_for

from inocray.cli import main
from inocray.config import TrainSpec
from inocray.errors import InputError
from inocray.results import _rows as store
from inocray.results import read_rows, storage
from inocray.run._jobs import TERMINAL, connect, job_info, job_logs
from inocray.training import TrainJob
from inocray.training import _checkpoints as checkpoints
from inocray.training._workers import JobQueue

WORKER_CPUS = 2
SIZES = {"engine": {"name": "transformers", "replicas": 2, "num_cpus": 0.5}, "max_concurrent_trials": 2}
GROUP = {"cpus_per_worker": 0.9}  # a training group's one worker: one group a node beside a replica
HELD_TRAIN = {"steps": 40, "checkpoint_every": 10}  # log lines at 25 and 40, checkpoints at 10, 20, 30
HELD = "es-always-s0"
HELD_AT = "step-20"  # the held trial's newest checkpoint while its rank 0 waits at the line of step 25


# --- without a cluster: the queue's side of a lost node, and rows from before the node column ---


def job(name: str) -> TrainJob:
    return TrainJob(trial_id=name, examples=[], base_model="", adapter_dir="", prompt_texts=(),
                    placement="system", seed=0, train=TrainSpec(), max_failures=1)


def test_the_job_of_a_lost_nodes_group_goes_to_the_next_live_group():
    async def scenario():
        queue = JobQueue(slots=2)
        await queue.attach(0)
        await queue.attach(1)
        lost = await queue.submit(job("a"))
        other = await queue.submit(job("b"))
        assert (await queue.next(0, timeout=1, node="n0"))[0] == lost
        assert (await queue.next(1, timeout=1, node="n1"))[0] == other
        later = await queue.submit(job("c"))
        await queue.nodes_alive({"n0", "n1"})
        assert await queue.lost_slots() == []
        await queue.nodes_alive({"n1"})  # n0 is gone, and slot 0's group with it
        assert await queue.lost_slots() == [0]
        # Tune runs trial "a" again (its actor was on n0): it waits for the same job, not a second one.
        assert await queue.submit(job("a")) == lost
        await queue.done(1)
        assert (await queue.next(1, timeout=1, node="n1")) == (lost, job("a"))  # before any later job
        await queue.done(1)
        assert await queue.wait(lost, 0, timeout=1) == ([], True, "", False)
        assert await queue.node_of(lost) == "n1"  # the node that finished it
        assert (await queue.next(1, timeout=1, node="n1"))[0] == later
        assert await queue.submit(job("a")) != lost  # a finished job is not waited for again
        await queue.attach(0)  # a new group on slot 0 (a new node): no longer lost
        assert await queue.lost_slots() == []

    asyncio.run(scenario())


def test_a_job_lost_with_its_node_more_often_than_it_may_fail_fails():
    async def scenario():
        queue = JobQueue(slots=2)
        ticket = await queue.submit(job("a"))
        for slot, node in ((0, "n0"), (1, "n1")):
            await queue.attach(slot)
            assert (await queue.next(slot, timeout=1, node=node))[0] == ticket
            await queue.nodes_alive({"n2"})
        assert (await queue.wait(ticket, 0, timeout=1))[2] == (
            "the training worker group failed 2 times; last error: its training group's node n1 was lost")

    asyncio.run(scenario())


def test_a_stopped_job_is_neither_waited_for_again_nor_resumed_after_its_node_is_lost():
    async def scenario():
        queue = JobQueue(slots=2)
        await queue.attach(0)
        stopped = await queue.submit(job("a"))
        assert (await queue.next(0, timeout=1, node="n0"))[0] == stopped
        await queue.stop("a")  # a search's scheduler stopped the trial while it trains
        again = await queue.submit(job("a"))  # a finalist continues past its stop: a job of its own
        assert again != stopped
        await queue.nodes_alive({"n1"})  # the stopped job's node is lost: it ends, not queued again
        assert (await queue.wait(stopped, 0, timeout=1))[1:] == (True, "", True)
        await queue.attach(1)
        assert (await queue.next(1, timeout=1, node="n1"))[0] == again

    asyncio.run(scenario())


def test_rows_written_before_the_node_column_prove_their_trial_and_read_as_no_node(tmp_path):
    from conftest import result_row

    old = pa.schema([f for f in store.SCHEMA if f.name != "node"])
    (tmp_path / "rows").mkdir()
    pq.write_table(pa.Table.from_pylist([result_row(trial_id="t1")], schema=old), tmp_path / "rows" / "t1.parquet")
    store.write_rows(tmp_path, "t2", [result_row(trial_id="t2", node="ab12")])
    assert store.has_rows(tmp_path, "t1", "abc") and store.has_rows(tmp_path, "t2", "abc")
    assert {r["trial_id"]: r["node"] for r in read_rows(tmp_path).to_pylist()} == {"t1": None, "t2": "ab12"}


# --- three nodes -------------------------------------------------------------------------------


@dataclass
class ThreeNodes:
    cluster: object  # ray.cluster_utils.Cluster
    address: str  # the dashboard's URL, where `inocray submit` sends jobs
    temp: str  # each worker node's temp dir goes under it
    workers: list = field(default_factory=list)  # ray._private.node.Node of each live worker node
    added: int = 0

    def worker_ids(self) -> set[str]:
        return {w.node_id for w in self.workers}

    def add_worker(self) -> None:
        """A worker node with a temp dir of its own, as on a machine of its own: nodes sharing
        the head's (Cluster's default) share its session dir, where a worker node's runtime-env
        agent unpacked the job's working directory again and so deleted the directory the
        driver on the head ran in (its os.getcwd() failed in Tune: FileNotFoundError)."""
        self.added += 1
        with own_internal_kv():
            self.workers.append(self.cluster.add_node(num_cpus=WORKER_CPUS, object_store_memory=100 * 2**20,
                                                      temp_dir=f"{self.temp}/w{self.added}"))


@contextlib.contextmanager
def own_internal_kv():
    """Keep this process's Ray key-value client on this process's own Ray (the suite's
    `ray_session`, if it is up). Every node Ray starts in a process points that process's client
    at the node's GCS; after this module's cluster is gone, the next sweep of the suite's Ray
    (Tune and Serve keep state there) waited 60 s for the dead GCS, and Ray then ended the whole
    test process (CI stopped after tests/test_real_model.py's start, the summary unwritten)."""
    from ray.experimental import internal_kv

    saved = internal_kv.internal_kv_get_gcs_client()
    try:
        yield
    finally:
        if saved is None:
            internal_kv._internal_kv_reset()
        else:
            internal_kv._initialize_internal_kv(saved)


@pytest.fixture(scope="module")
def three_nodes(s3_server):
    """The cluster, apart from any other Ray on the machine: its own temp dir (so its address
    file is not where another `ray.init()` looks), free ports for the head's services. Its nodes
    inherit this process's environment: this worktree's code on PYTHONPATH and `inocray` on PATH
    (what `ray up` installs on every node), the S3 server's AWS variables and RAY_AUTH_MODE=token
    (what cluster.yaml's setup commands export), with the token of ~/.ray/auth_token (where
    cluster.yaml puts it; made here when missing, as `ray.init` makes it): every process of the
    cluster, the job's driver and this client want and send that token, whether or not a Ray
    of this process turned token mode on before.

    The head's temp dir is RAY_TMPDIR/ray, the one directory where both sides of the address
    file look: `Cluster` writes RAY_TMPDIR/ray/ray_current_cluster, and a job's supervisor
    reads TEMP_DIR/ray_current_cluster to give the job's driver its RAY_ADDRESS. With the two
    apart, the supervisor found no file and took any GCS running on the machine (Ray's legacy
    "auto"), and the submitted sweep went to another Ray."""
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="ray-mn-", dir="/tmp")  # short: socket paths
    head_temp = f"{temp}/ray"  # where the cluster's address file goes, and is looked for (above)
    os.mkdir(head_temp)
    cluster = None
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_TMPDIR", temp)
        env.delenv("RAY_ADDRESS", raising=False)
        env.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
        for key, value in s3_server.items():
            env.setenv(key, value)
        token_auth(env)
        gcs, dashboard, agent, metrics, env_agent = free_ports(5)
        head = {"num_cpus": 0, "temp_dir": head_temp, "gcs_server_port": gcs, "include_dashboard": True,
                "dashboard_host": "127.0.0.1", "dashboard_port": dashboard, "dashboard_agent_listen_port": agent,
                "metrics_export_port": metrics, "runtime_env_agent_port": env_agent,
                "object_store_memory": 100 * 2**20}
        try:
            with own_internal_kv():
                cluster = Cluster(initialize_head=True, shutdown_at_exit=False, head_node_args=head)
            nodes = ThreeNodes(cluster, f"http://127.0.0.1:{dashboard}", temp)
            for _ in range(2):
                nodes.add_worker()
            cluster.wait_for_nodes()
            wait_for(lambda: _dashboard_up(nodes.address))
            yield nodes
        finally:
            if cluster is not None:
                for node in [*cluster.worker_nodes, cluster.head_node]:
                    if node is not None:
                        cluster.remove_node(node, allow_graceful=True)
            for pid in set(processes_with(f"RAY_TMPDIR={temp}")) - {os.getpid()}:  # anything left behind
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            shutil.rmtree(temp, ignore_errors=True)


def token_auth(env: pytest.MonkeyPatch) -> None:
    """RAY_AUTH_MODE=token for the nodes this process starts and for this process's own Ray
    clients (Ray reads the variable into its config once per process: read again here), and a
    token where Ray looks for one."""
    from ray._private.authentication.authentication_token_setup import (
        ensure_token_if_auth_enabled,
    )
    from ray._raylet import Config

    if os.environ.get("RAY_AUTH_MODE") != "token":  # else a Ray of this process has set it already
        env.setenv("RAY_AUTH_MODE", "token")
        Config.initialize("")
    ensure_token_if_auth_enabled(None, create_token_if_missing=True)


def _dashboard_up(address: str) -> bool:
    """The head's job API answers (with the token: the dashboard refuses a request without it)."""
    try:
        connect(address)[0].list_jobs()
        return True
    except (InputError, RuntimeError):  # not listening yet, or its job module not up yet
        return False


@pytest.fixture
def cluster(three_nodes):
    """The three nodes, with a second worker again if a test before lost one."""
    while len(three_nodes.workers) < 2:
        three_nodes.add_worker()
    three_nodes.cluster.wait_for_nodes()
    return three_nodes


def submit(cluster: ThreeNodes, sweep: Path, run_dir: str) -> str:
    result = CliRunner().invoke(main, ["submit", str(sweep), "--address", cluster.address, "--run-dir", run_dir])
    assert result.exit_code == 0, result.output
    return result.output.split("submitted job ", 1)[1].split(":", 1)[0]


def finished(cluster: ThreeNodes, job_id: str, until: tuple[str, ...] = TERMINAL) -> str:
    """The job's status once it is one of `until` (or has ended)."""
    status = ""
    while status not in until and status not in TERMINAL:
        time.sleep(1)
        status = str(job_info(cluster.address, job_id).status)
    return status


def until(cluster: ThreeNodes, job_id: str, condition) -> None:
    """Wait until `condition()` holds; the job ending first is a failure that shows its log."""
    while not condition():
        status = str(job_info(cluster.address, job_id).status)
        assert status not in TERMINAL, f"job {status} too early:\n" + job_logs(cluster.address, job_id)[-3000:]
        time.sleep(1)


def sweep_file(tmp_path: Path, toy_model, **overrides) -> Path:
    path = tmp_path / "sweep.yaml"
    train = GROUP | overrides.pop("train", {})
    path.write_text(yaml.safe_dump(tiny_sweep(model=str(toy_model), **SIZES, train=train, **overrides)))
    return path


def trained_nodes(run_dir: str) -> dict[str, set[str]]:
    """Trial id -> the nodes its trained rows name; asserts each trial's rows are there once."""
    rows = [r for r in read_rows(storage.location(run_dir)).to_pylist() if r["stage"] == "trained"]
    keys = [(r["trial_id"], r["context"], r["trait"]) for r in rows]
    assert len(keys) == len(set(keys)), "a trial's rows are there twice"
    nodes: dict[str, set[str]] = {}
    for r in rows:
        nodes.setdefault(r["trial_id"], set()).add(r["node"])
    return nodes


def replica_nodes(run_dir: str) -> list[tuple[str, str]]:
    """(replica, node) of each engine replica start, in the order of the files' lines."""
    logs = storage.join(storage.location(run_dir), "logs")
    found = []
    for name in storage.names(logs, suffix=".log"):
        if name.startswith("engine-"):
            text = storage.read_bytes(storage.join(logs, name)).decode()
            found += re.findall(r" replica (\w+) of \S+ starts on node (\w+) ", text)
    return found


def rows_of(run_dir: Path) -> set[str]:
    return {p.stem for p in (run_dir / "rows").glob("*.parquet")} - {"base", "data"}


def held_run(cluster: ThreeNodes, tmp_path: Path, toy_model, **overrides):
    """Submit a sweep into a shared run directory with trial HELD's log held (module doc);
    returns the job id, the run directory, the HeldLog and every trial's id."""
    from inocray.config import load_sweep, make_plan

    sweep = sweep_file(tmp_path, toy_model, train=HELD_TRAIN, **overrides)
    trials = {t.id for t in make_plan(load_sweep(sweep)).trials}
    run_dir = tmp_path / "shared" / "run"
    held = HeldLog(run_dir / "logs" / f"{HELD}.log", hold_after=lambda line: " start step=0 " in line)
    held.start()
    return submit(cluster, sweep, str(run_dir)), sweep, run_dir, held, trials


def at_the_hold(held: HeldLog, run_dir: Path, trials: set[str]) -> bool:
    """Every other trial has rows and the held trial sits at its hold point: rank 0 waits at its
    line of step 25, so its newest checkpoint is step 20. The other trials may finish before the
    held one gets there (a plain trial of 40 steps ended while the held one was between its
    checkpoints of steps 10 and 20)."""
    return (held.held.is_set() and rows_of(run_dir) == trials - {HELD}
            and checkpoints.latest_tag(str(run_dir / "checkpoints" / HELD)) == HELD_AT)


def node_of_held(held: HeldLog) -> str:
    (node,) = set(re.findall(r" taken by the training group of slot \d+ on node (\w+)", "".join(held.lines)))
    return node


@pytest.mark.slow
@pytest.mark.parametrize("where", ["shared", "s3"])
def test_a_submitted_sweep_trains_and_serves_on_both_worker_nodes(cluster, toy_model, tmp_path, request, where):
    """Shared: trial HELD is held on its group until every other trial has rows, so the other
    group trains those: both nodes train. S3 (no pipe to hold): every row names a worker node."""
    workers = cluster.worker_ids()
    if where == "shared":
        job_id, _, run_dir, held, trials = held_run(cluster, tmp_path, toy_model, prompts=["es-always", "es-often"])
        until(cluster, job_id, lambda: held.held.is_set() and rows_of(run_dir) == trials - {HELD})
        held.release()
        run_dir = str(run_dir)
    else:
        run_dir = request.getfixturevalue("s3")
        job_id = submit(cluster, sweep_file(tmp_path, toy_model, prompts=["es-always", "es-often"]), run_dir)
    status = finished(cluster, job_id)
    if where == "shared":
        held.close()
    assert status == "SUCCEEDED", job_logs(cluster.address, job_id)[-3000:]

    nodes = trained_nodes(run_dir)
    assert len(nodes) == 3 and all(len(n) == 1 and n <= workers for n in nodes.values()), nodes
    replicas = replica_nodes(run_dir)
    assert {n for _, n in replicas} == workers, replicas  # Serve spread the two replicas over both nodes
    if where == "shared":
        assert set.union(*nodes.values()) == workers, nodes  # both nodes trained
        assert nodes[HELD] == {node_of_held(held)}


def kill_node(node) -> None:
    """SIGKILL a worker node: its raylet and every process on it (the raylet's workers and
    agents), all at once."""
    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
    victims = [raylet, *raylet.children(recursive=True)]
    victims += [psutil.Process(info.process.pid) for infos in node.all_processes.values() for info in infos
                if info.process.poll() is None and info.process.pid != raylet.pid]
    for p in victims:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=30)  # gone, and with them the held rank 0's wait at the pipe


@pytest.mark.slow
def test_a_worker_node_lost_mid_trial_and_the_sweep_finishes_on_the_other(cluster, toy_model, tmp_path):
    job_id, _, run_dir, held, trials = held_run(cluster, tmp_path, toy_model)
    until(cluster, job_id, lambda: at_the_hold(held, run_dir, trials))
    lost = node_of_held(held)
    (survivor,) = cluster.worker_ids() - {lost}
    before = replica_nodes(str(run_dir))
    assert {n for _, n in before} == {lost, survivor}, before  # a replica on each node

    node = next(w for w in cluster.workers if w.node_id == lost)
    kill_node(node)
    killed = time.monotonic()
    cluster.cluster.remove_node(node, allow_graceful=False)  # the bookkeeping; its processes are gone
    cluster.workers.remove(node)
    # Read on: the held rank 0 is gone, but the trial's trainable may live on the survivor, its
    # line for a snapshot evaluated meanwhile waiting at the pipe; the resumed trial writes there too.
    read_before = len(held.lines)
    held.release()
    seen = {}  # when Ray declared the node dead, and when the trial resumed, after the kill

    def after_kill() -> str:
        return "".join(held.lines[read_before:])

    def resumed() -> bool:
        if "dead" not in seen and lost not in cluster.cluster.global_state._live_node_ids():
            seen["dead"] = time.monotonic() - killed
        return " resume step=" in after_kill()

    until(cluster, job_id, resumed)
    resumed_after = time.monotonic() - killed
    status = finished(cluster, job_id)
    held.close()
    output = job_logs(cluster.address, job_id)
    print(f"\nkill -> node declared dead {seen.get('dead', float('nan')):.1f} s, -> resumed trial's first step "
          f"{resumed_after:.1f} s (load {os.getloadavg()[0]:.1f})\n--- the job's output ---\n{output}")
    assert status == "SUCCEEDED", output[-3000:]

    nodes = trained_nodes(str(run_dir))
    assert set(nodes) == trials and nodes[HELD] == {survivor}, nodes  # each trial once, the lost one by the survivor
    text = after_kill()
    assert re.findall(r" (start|resume) step=(\d+) ", text) == [("resume", HELD_AT.removeprefix("step-"))], text
    assert f"on node {survivor}" in text and " end step=40 " in text, text
    after = [r for r in replica_nodes(str(run_dir)) if r not in before]
    assert after and {n for _, n in after} == {survivor}, after  # the lost replica started again, on the survivor


@pytest.mark.slow
def test_the_driver_killed_then_the_same_submit_finishes_every_trial_once(cluster, toy_model, tmp_path):
    job_id, sweep, run_dir, held, trials = held_run(cluster, tmp_path, toy_model, prompts=["es-always", "es-often"])
    until(cluster, job_id, lambda: at_the_hold(held, run_dir, trials))
    survivors = {t: (run_dir / "rows" / f"{t}.parquet").stat().st_mtime_ns for t in trials - {HELD}}
    (driver,) = [p for p in psutil.process_iter(["cmdline"])
                 if p.info["cmdline"] and "run" in p.info["cmdline"] and str(run_dir) in p.info["cmdline"]
                 and any(a.endswith("inocray") for a in p.info["cmdline"][:2])]
    driver.send_signal(signal.SIGKILL)
    assert finished(cluster, job_id) == "FAILED"
    held.close()

    again = submit(cluster, sweep, str(run_dir))
    status = finished(cluster, again)
    output = job_logs(cluster.address, again)
    assert status == "SUCCEEDED", output[-3000:]
    assert f"{len(trials)} trials, {len(trials) - 1} already done" in output, output
    assert {t: (run_dir / "rows" / f"{t}.parquet").stat().st_mtime_ns for t in survivors} == survivors
    nodes = trained_nodes(str(run_dir))
    assert set(nodes) == trials and all(len(n) == 1 and n <= cluster.worker_ids() for n in nodes.values()), nodes
    text = (run_dir / "logs" / f"{HELD}.log").read_text()
    assert re.findall(r" (start|resume) step=(\d+) ", text) == [("resume", HELD_AT.removeprefix("step-"))], text
