"""Sweeps as Ray Jobs on a cluster: submit, status, logs, stop.

`inocray submit` checks the sweep file here, then hands the cluster a job whose working
directory holds only that file and whose entrypoint is

    inocray run SWEEP.yaml --address auto --run-dir RUN_DIR

inocray itself is installed on every node (cluster.yaml), so no code travels with the job.
A job's working directory is temporary, so RUN_DIR must be an absolute path on the
cluster's shared storage (default /mnt/shared/runs/NAME-HASH, where cluster.yaml mounts it)
or an s3:// URI.

The client talks to the head's dashboard (http://HEAD:8265, usually an ssh tunnel to
http://127.0.0.1:8265). Every failure a user can fix (no cluster there, a missing auth
token, an unknown job id) becomes an InputError: one sentence, exit 2.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shlex
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlsplit

from inocray.config import SweepSpec, load_sweep
from inocray.errors import InputError
from inocray.results import run_dir_name, storage

CLUSTER_RUNS_ROOT = "/mnt/shared/runs"  # the shared mount of cluster.yaml and docs/cluster-local.yaml
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
_UPLOAD_LOGGERS = ("ray.dashboard.modules.dashboard_sdk", "ray._private.runtime_env.packaging")


@dataclass(frozen=True)
class Submission:
    job_id: str
    address: str
    entrypoint: str
    run_dir: str | None  # None for a validate-only job

    @property
    def dashboard_url(self) -> str:
        return f"{self.address}/#/jobs/{self.job_id}"


def submit_sweep(sweep_file: str | Path, address: str, run_dir: str | None = None,
                 validate_only: bool = False) -> Submission:
    """Check `sweep_file` here, then submit `inocray run` (or `inocray validate`) for it."""
    sweep_file = Path(sweep_file)
    spec = load_cluster_spec(sweep_file)
    name = sweep_file.name
    if validate_only:
        run_dir, entrypoint = None, ["inocray", "validate", name]
    else:
        run_dir = run_dir or f"{CLUSTER_RUNS_ROOT}/{run_dir_name(spec)}"
        if storage.is_remote(run_dir):
            run_dir = str(storage.location(run_dir))  # a malformed URI fails here, not on the cluster
        elif not PurePosixPath(run_dir).is_absolute():
            raise InputError(f"--run-dir {run_dir} must be an absolute path on the cluster's shared storage "
                             "or an s3:// URI (a job's working directory is deleted after the job)")
        entrypoint = ["inocray", "run", name, "--address", "auto", "--run-dir", run_dir]
    metadata = {"inocray_sweep": spec.name, "inocray_sweep_hash": spec.hash()}
    if run_dir:
        metadata["inocray_run_dir"] = run_dir
    job_id = f"inocray-{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    return submit_entrypoint(address, shlex.join(entrypoint), files=[sweep_file], metadata=metadata,
                             job_id=job_id, run_dir=run_dir)


def submit_entrypoint(address: str, entrypoint: str, files: Sequence[Path] = (), metadata: dict | None = None,
                      job_id: str | None = None, run_dir: str | None = None) -> Submission:
    """Submit a shell `entrypoint` whose working directory holds copies of `files`."""
    client, address = connect(address)
    with tempfile.TemporaryDirectory(prefix="inocray-job-") as workdir:
        runtime_env: dict = {"env_vars": {"PYTHONUNBUFFERED": "1"}}  # stream the output to `inocray logs`
        if files:
            for f in files:
                shutil.copy(f, Path(workdir) / Path(f).name)
            runtime_env["working_dir"] = workdir
        with _cluster_errors(address), _quiet(*_UPLOAD_LOGGERS):
            job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env,
                                       metadata=metadata or {}, submission_id=job_id)
    return Submission(job_id, address, entrypoint, run_dir)


def job_info(address: str, job_id: str) -> Any:
    """Ray's JobDetails (status, message, entrypoint, times, metadata) of one job."""
    client, address = connect(address)
    with _cluster_errors(address, job_id):
        return client.get_job_info(job_id)


def job_logs(address: str, job_id: str) -> str:
    client, address = connect(address)
    with _cluster_errors(address, job_id):
        return client.get_job_logs(job_id)


def follow_logs(address: str, job_id: str, echo: Callable[[str], None]) -> None:
    """Print the job's logs as they come, until the job ends."""
    import asyncio

    client, address = connect(address)

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            echo(chunk)

    with _cluster_errors(address, job_id):
        client.get_job_info(job_id)  # a clear error for an unknown id before the websocket opens
        asyncio.run(tail())


def stop_job(address: str, job_id: str, wait_s: float = 60.0) -> str:
    """Ask the cluster to stop the job; wait up to `wait_s` for it to end; return its status."""
    client, address = connect(address)
    with _cluster_errors(address, job_id):
        client.stop_job(job_id)  # False if it had already ended
        deadline = time.monotonic() + wait_s
        while True:
            status = str(client.get_job_status(job_id))
            if status in TERMINAL or time.monotonic() > deadline:
                return status
            time.sleep(1)


def connect(address: str) -> tuple[Any, str]:
    """A JobSubmissionClient for the dashboard at `address`, and the address it uses."""
    address = _normalize(address)
    url = urlsplit(address)
    port = url.port or (443 if url.scheme == "https" else 80)
    # Fail in seconds, not after the OS's two-minute connect timeout, when nothing is there.
    try:
        socket.create_connection((url.hostname, port), timeout=10).close()
    except OSError:
        raise _unreachable(address) from None
    from ray.job_submission import JobSubmissionClient

    with _cluster_errors(address), _without_env("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        # Ray lets those variables override an explicit address; --address should win.
        return JobSubmissionClient(address), address


def load_cluster_spec(path: str | Path) -> SweepSpec:
    """load_sweep for a sweep that will run on a cluster: its model directory need not exist here."""
    return load_sweep(path, check_model=False)


def _normalize(address: str) -> str:
    address = address.strip().rstrip("/")
    if "://" not in address:
        address = f"http://{address}"
    scheme = address.split("://", 1)[0]
    try:
        ok = scheme in ("http", "https") and bool(urlsplit(address).hostname) and urlsplit(address).port != 0
    except ValueError:  # a port that is not a number
        ok = False
    if not ok:
        raise InputError(f"--address {address} is not the dashboard's URL (like http://127.0.0.1:8265)")
    return address


def _unreachable(address: str) -> InputError:
    return InputError(f"cannot reach a Ray cluster at {address} (is the head up, and is the dashboard port "
                      "forwarded, e.g. with `ray dashboard cluster.yaml`?)")


@contextlib.contextmanager
def _cluster_errors(address: str, job_id: str | None = None) -> Iterator[None]:
    """Turn the job client's errors that a user can fix into one-sentence InputErrors."""
    import aiohttp
    import requests
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError:
        raise InputError(
            f"the Ray cluster at {address} wants its auth token: set RAY_AUTH_MODE=token and put the cluster's "
            "token in RAY_AUTH_TOKEN, in a file named by RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token"
        ) from None
    except (ConnectionError, requests.exceptions.ConnectionError, aiohttp.ClientConnectionError):
        raise _unreachable(address) from None
    except RuntimeError as e:
        if job_id and "404" in str(e):
            raise InputError(f"the Ray cluster at {address} has no job {job_id}") from None
        raise


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Hide Ray's INFO lines about uploading the working directory."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _without_env(*names: str) -> Iterator[None]:
    saved = {n: os.environ.pop(n) for n in names if n in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)
