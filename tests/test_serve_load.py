"""Serve starts under load: with two busy loops on the machine's cores, the engine app starts
and answers, and Serve runs no HTTP proxy (whose late readiness check made Serve's controller
kill it and fail the start, ActorDiedError)."""

import os
import signal
import subprocess
import sys

import pytest

from inocray.config import EngineSpec
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
    from ray.util.state import list_actors

    handle = serve.start("test-load", str(toy_model), EngineSpec(name="transformers", num_cpus=0.25))
    try:
        request = serve.GenerateRequest([[{"role": "user", "content": "hola"}]], 1, 4, 0.0)
        assert len(handle.generate.remote(request).result()) == 1  # one chat, answered
        alive = [a.class_name for a in list_actors(filters=[("state", "=", "ALIVE")])]
        assert "ServeController" in alive and not [c for c in alive if "Proxy" in c], alive
    finally:
        serve.stop("test-load")
