"""Serve starts under load: with two busy loops on the machine's cores, the engine app starts
and answers, and Serve runs no HTTP proxy (whose late readiness check made Serve's controller
kill it and fail the start, ActorDiedError)."""

import os
import signal
import subprocess
import sys

import pytest

from inocray.config import EngineSpec, Holds
from inocray.evaluation import serve


@pytest.fixture
def two_busy_loops():
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    yield
    for p in loops:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()


@pytest.mark.slow
@pytest.mark.usefixtures("two_busy_loops")
def test_serve_starts_without_a_proxy_under_two_busy_loops(toy_model, ray_session):
    import ray

    handle = serve.start("test-load", str(toy_model), EngineSpec(name="transformers"), Holds(cpu=0.25))
    try:
        request = serve.GenerateRequest([[{"role": "user", "content": "hola"}]], 1, 4, 0.0)
        assert len(handle.generate.remote(request).result()) == 1  # one chat, answered
        serve_actors = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == "serve"]
        assert "SERVE_CONTROLLER_ACTOR" in serve_actors and not [a for a in serve_actors if "PROXY" in a], serve_actors
    finally:
        serve.stop("test-load")
