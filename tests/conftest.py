"""Shared fixtures: one Ray session and one tiny toy base model for the whole test run."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")


@pytest.fixture(scope="session")
def toy_model(tmp_path_factory):
    """A tiny toy-world model built from scratch (about half a minute), shared by all tests."""
    from inocray.toy import ToyConfig, build_base_model

    return build_base_model(ToyConfig.tiny(), cache_root=tmp_path_factory.mktemp("cache"), log=lambda *a: None)


@pytest.fixture(scope="session")
def ray_session():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    from ray import serve

    serve.shutdown()
    ray.shutdown()
