"""The cluster lets in only its own: a head started as cluster.yaml starts it refuses a client without its token.

The head gets what the cluster file gives a node: the environment its setup commands export
(RAY_AUTH_MODE), the token where its file_mounts put it (~/.ray/auth_token, under a HOME of
the test's own), and the flags of its `ray start --head` line; only the ports (free ones,
never Ray's defaults), the temp dir and the node's address are the test's, so that it never
meets another Ray on the machine (see test_cluster.py's ray_head).
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from test_cluster import ROOT, Head, _free_ports, _run, running_head

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
    ports = dict(zip(PORTS, _free_ports(len(PORTS))))  # every port of the head a free one of its own
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
