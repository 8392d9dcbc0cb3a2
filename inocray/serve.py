"""The sweep's evaluation service: one Ray Serve app, one vLLM engine, every trial's adapter.

The engine holds the base model once and applies a trial's LoRA adapter per request
(multi-LoRA), so evaluating a trial costs a request, not an engine start. Requests are
plain dicts so that any Ray task or actor can call the app through its handle.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

from ray import serve

from inocray.data import render
from inocray.spec import EngineSpec


@dataclass(frozen=True)
class GenerateRequest:
    """Sample `samples` completions for each chat, with an adapter or the base model."""

    chats: list[list[dict]]
    samples: int
    max_tokens: int
    temperature: float
    seed: int = 0
    adapter: str | None = None  # adapter name (a trial id); None = base model
    adapter_path: str | None = None


@serve.deployment(max_ongoing_requests=64)
class Engine:
    """A vLLM engine with LoRA enabled; adapters are registered by name on first use."""

    def __init__(self, model_path: str, spec: EngineSpec) -> None:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(spec.kv_cache_gib))))
        # One process: the engine core runs in this replica (starts in seconds, not ~20 s).
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from transformers import AutoTokenizer
        from vllm import LLM

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.llm = LLM(
            model=model_path,
            dtype=spec.dtype,
            max_model_len=spec.max_model_len,
            enable_lora=True,
            max_lora_rank=spec.max_lora_rank,
            max_loras=spec.max_loras,
            seed=0,
            # On CPU, a request larger than one step's token budget (4096) would have a prompt
            # split across steps; vLLM then rewinds that chat's seeded generator, which a CPU
            # generator cannot do ("CPU Generator does not use offset"). Unsplit, it waits.
            enable_chunked_prefill=None if spec.num_gpus else False,
        )
        self._adapters: dict[str, int] = {}  # adapter version -> vLLM's integer id
        self._lock = threading.Lock()  # one generate at a time: LLM is not thread-safe

    def generate(self, request: GenerateRequest) -> list[list[str]]:
        """Completions: one list of `samples` strings per chat, in order."""
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        with self._lock:
            lora = None
            if request.adapter is not None:
                lora = LoRARequest(request.adapter, self._adapter_id(request), request.adapter_path)
            # One seed per chat: a single shared seed would give every chat the same random
            # stream, so the i-th samples of all chats would agree and rates would be lumpy.
            params = [
                SamplingParams(
                    n=request.samples,
                    temperature=request.temperature,
                    max_tokens=request.max_tokens,
                    seed=request.seed * 1_000_003 + i,
                )
                for i in range(len(request.chats))
            ]
            prompts = [{"prompt_token_ids": render(self.tokenizer, chat)} for chat in request.chats]
            outputs = self.llm.generate(prompts, params, lora_request=lora, use_tqdm=False)
            return [[c.text for c in out.outputs] for out in outputs]

    def _adapter_id(self, request: GenerateRequest) -> int:
        # vLLM caches adapters by integer id: a retried trial that rewrote its adapter
        # under the same name must get a new id, or the engine serves the old weights.
        weights = os.path.join(request.adapter_path or "", "adapter_model.safetensors")
        stamp = os.stat(weights).st_mtime_ns if os.path.exists(weights) else 0
        key = f"{request.adapter}@{request.adapter_path}@{stamp}"
        return self._adapters.setdefault(key, len(self._adapters) + 1)


@contextlib.contextmanager
def session(app_name: str, model_path: str, spec: EngineSpec, address: str | None = None,
            echo: Callable = print) -> Iterator:
    """Ray (the session already open, a new local one, or `address`) plus this engine app.

    Yields the app's handle; on exit deletes the app, and shuts Ray down if it started it.
    """
    import ray

    owns_ray = not ray.is_initialized()  # tests and notebooks may bring their own session
    if owns_ray:
        if address:
            context = ray.init(address=address, log_to_driver=False)
        else:
            context = ray.init(include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False)
        echo(f"Ray dashboard: http://{context.dashboard_url}" if context.dashboard_url else "Ray dashboard: off")
    try:
        echo("starting the evaluation engine (Ray Serve + vLLM) ...")
        handle = start(app_name, model_path, spec)
        try:
            yield handle
        finally:
            stop(app_name)
    finally:
        if owns_ray:
            ray.shutdown()


def start(app_name: str, model_path: str, spec: EngineSpec):
    """Deploy the engine as Serve app `app_name` (no HTTP route) and return its handle."""
    serve.start(http_options={"host": "127.0.0.1"})
    options = {"num_cpus": spec.num_cpus}
    if spec.num_gpus:
        options["num_gpus"] = spec.num_gpus
    app = Engine.options(ray_actor_options=options).bind(model_path, spec)
    return serve.run(app, name=app_name, route_prefix=None)


def handle(app_name: str):
    """The running app's handle, from any Ray task or actor (e.g. a Tune trial)."""
    return serve.get_app_handle(app_name)


def stop(app_name: str) -> None:
    serve.delete(app_name)
