"""The sweep's evaluation service: one Ray Serve app, `engine.replicas` engines, every trial's adapter.

An engine holds the base model once and applies a trial's LoRA adapter per request
(multi-LoRA), so evaluating a trial costs a request, not an engine start; the requests of
trials evaluating at the same time share the engine's batches. The backend doing the work
(vLLM or transformers, see inocray/backends) is chosen by `EngineSpec.name`. Requests are
plain values so that any Ray task or actor can call the app through its handle
(`EngineHandle`: routed by adapter, sent again if its replica died).

Two more kinds of app sit beside the sweep's: a judge model (`session(judge_model=...)`) and
a fully fine-tuned model, which cannot be an adapter on the shared engine (`model_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

from ray import serve

from inocray import models
from inocray.chat import render, response_ids
from inocray.config import EngineSpec, Holds, own_engine
from inocray.evaluation._judge import Judge
from inocray.evaluation.backends import GenerateRequest, load_backend
from inocray.results import storage

__all__ = ["Engine", "EngineHandle", "GenerateRequest", "session", "start", "handle", "stop", "model_app", "judge", "judge_app"]


MAX_ONGOING = 64  # requests one replica works on at once; Serve queues the rest (back-pressure)
RETRIES = 3  # times a call is sent again after its replica died (Serve starts a new one)


@serve.deployment(max_ongoing_requests=MAX_ONGOING)
class Engine:
    """One backend answering many requests at once, each on a thread of its own.

    The vLLM backend puts all of them in one running batch (continuous batching across
    trials); the transformers backend answers them in turn. A request that names an adapter
    is routed to the replica that holds it (Serve's model multiplexing, keyed by the adapter's
    name, at most `max_loras` per replica): see `EngineHandle`.
    """

    def __init__(self, model_path: str, spec: EngineSpec, log_dir: str = "") -> None:
        from ray.serve.metrics import Counter, Gauge  # tagged with the replica, deployment and app

        threads = _use_threads(spec.threads)
        if log_dir:  # where each replica ran: one file per replica, so none waits for another
            _log_replica(log_dir, threads)
        self.backend = load_backend(storage.local_copy(model_path), spec)
        self._max_len = spec.max_model_len
        self._threads = ThreadPoolExecutor(MAX_ONGOING, thread_name_prefix="engine-request")

        async def hold(adapter: str) -> str:  # what Serve's router reads: the adapters this replica holds
            return adapter

        self._hold = serve.multiplexed(max_num_models_per_replica=spec.max_loras)(hold)
        self._speed = Gauge("inocray_eval_tokens_per_second",
                            description="generated tokens per second of this replica while its last request ran",
                            tag_keys=("app",))
        self._speed.set_default_tags({"app": serve.get_replica_context().app_name})
        self._requests = Counter("inocray_eval_requests",
                                 description="calls answered (generate, top_logprobs), by replica and adapter",
                                 tag_keys=("app", "adapter"))
        self._requests.set_default_tags({"app": serve.get_replica_context().app_name})

    async def generate(self, request: GenerateRequest) -> list[list[str]]:
        """Completions: one list of `samples` strings per chat, in order."""

        def work():
            started, before = time.monotonic(), self.backend.generated_tokens
            completions = self.backend.generate(dataclasses.replace(request, adapter_path=_fetched(request.adapter_path)))
            self._speed.set((self.backend.generated_tokens - before) / max(time.monotonic() - started, 1e-9))
            return completions

        return await self._call(request.adapter, work)

    async def top_logprobs(
        self, chats: list[list[dict]], k: int, adapter: str | None = None, adapter_path: str | None = None
    ) -> list[dict[str, float]]:
        """Per chat: token text -> log-probability of the first reply token, the k most likely.

        A chat too long for the engine (a judge prompt around a long completion) gets {}: its
        judge score is then None (unscorable) instead of failing the whole request.
        """

        def work():
            fits = [len(render(self.backend.tokenizer, chat)) < self._max_len for chat in chats]
            kept = [c for c, ok in zip(chats, fits) if ok]
            answers = iter(self.backend.top_logprobs(kept, k, adapter, _fetched(adapter_path)) if kept else [])
            return [next(answers) if ok else {} for ok in fits]

        return await self._call(adapter, work)

    async def response_logprobs(self, chats: list[list[dict]], responses: list[str]) -> list[list[float]]:
        """Per (chat, response): the base model's log-probability of each token of the response
        as training scores it (its tokens and EOS), after the chat rendered for a reply."""

        def work():
            tokenizer = self.backend.tokenizer
            return self.backend.sequence_logprobs([render(tokenizer, c) for c in chats],
                                                  [response_ids(tokenizer, r) for r in responses])

        return await self._call(None, work)

    def numbers_are_single_tokens(self) -> bool:
        """Whether every number 0..100 is one token of this model (the judge reads the first token)."""
        encode = self.backend.tokenizer.encode
        return all(len(encode(str(n), add_special_tokens=False)) == 1 for n in range(101))

    async def _call(self, adapter: str | None, work: Callable):
        """`work()` on a thread of the pool (the backend, a download), counted under `adapter`.

        A call routed by adapter (EngineHandle) first tells Serve that this replica holds it.
        """
        if serve.get_multiplexed_model_id():
            await self._hold(serve.get_multiplexed_model_id())
        result = await asyncio.get_running_loop().run_in_executor(self._threads, work)
        self._requests.inc(tags={"adapter": adapter or ""})
        return result


class EngineHandle:
    """The engine app's handle as callers use it, `handle.METHOD.remote(*args).result()`, plus:

    - a call that names an adapter goes to the replica that already holds it: Serve's model
      multiplexing with the adapter's name as the model id. The replica itself keys what it
      loaded by adapter version (`backends.adapter_version`), so a retried trial's rewritten
      adapter is loaded anew on whichever replica gets it;
    - a call whose replica died is sent again (Serve restarts the replica; the call waits in
      the queue meanwhile), up to RETRIES times. Every engine call is a pure function of its
      arguments (seeded sampling), so the answer is the one the lost call would have given.
    """

    def __init__(self, handle) -> None:
        self._handle = handle

    def __getattr__(self, method: str) -> "_Method":
        if method.startswith("_"):
            raise AttributeError(method)
        return _Method(self._handle, method)


@dataclasses.dataclass(frozen=True)
class _Method:
    handle: object
    name: str

    def remote(self, *args, **kwargs) -> "_Call":
        return _Call(self, args, kwargs)


class _Call:
    """One call in flight; `result()` waits for it, sending it again if its replica died."""

    def __init__(self, method: _Method, args: tuple, kwargs: dict) -> None:
        self._method, self._args, self._kwargs = method, args, kwargs
        self._response = self._send()

    def _send(self):
        adapter = _adapter_of(self._method.name, self._args, self._kwargs)
        handle = self._method.handle.options(multiplexed_model_id=adapter or "")
        return getattr(handle, self._method.name).remote(*self._args, **self._kwargs)

    def result(self):
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import ReplicaUnavailableError

        for attempt in range(RETRIES + 1):
            try:
                return self._response.result()
            except (RayActorError, ReplicaUnavailableError):
                if attempt == RETRIES:
                    raise
                self._response = self._send()


def _adapter_of(method: str, args: tuple, kwargs: dict) -> str | None:
    """The adapter an Engine call names: its `adapter` argument, or its request's."""
    bound = inspect.signature(getattr(Engine.func_or_class, method)).bind(None, *args, **kwargs).arguments
    request = bound.get("request")
    return request.adapter if isinstance(request, GenerateRequest) else bound.get("adapter")


def _use_threads(threads: int) -> int:
    """Run this replica's model on `threads` CPU threads (0: Ray's count, the CPUs the replica
    reserves, at least one); returns how many it runs on.

    A replica reserves less than a core beside two training groups on 2 CPUs, so Ray gives it
    one thread; while the trials it serves wait for their evaluation, their groups' cores are
    idle, and `engine.threads: 2` lets the replica use them (docs/benchmarks.md)."""
    import torch

    if threads:
        torch.set_num_threads(threads)  # before the backend builds its model
    return torch.get_num_threads()


def _log_replica(log_dir: str, threads: int) -> None:
    """A line in LOG_DIR/engine-REPLICA.log: this replica, its app, its node, process and threads."""
    import ray

    context = serve.get_replica_context()
    replica = context.replica_id.unique_id
    storage.append_text(storage.join(log_dir, f"engine-{replica}.log"),
                        f"{time.strftime('%Y-%m-%dT%H:%M:%S')} replica {replica} of {context.app_name} starts "
                        f"on node {ray.get_runtime_context().get_node_id()} pid={os.getpid()} threads={threads}\n")


def _fetched(adapter_path: str | None) -> str | None:
    """A local directory for an adapter in an s3:// run directory (downloaded once per version)."""
    return storage.local_copy(adapter_path) if adapter_path else adapter_path


@contextlib.contextmanager
def session(app_name: str, model_path: str, spec: EngineSpec, replica: Holds, address: str | None = None,
            echo: Callable = print, judge_model: str = "", host: str = "127.0.0.1",
            before_start: Callable[[], None] | None = None, alone: bool = False,
            log_dir: str = "") -> Iterator:
    """Ray (the session already open, a new local one, or `address`) plus this engine app, each
    replica reserving `replica` (config.Placement.replica).

    `judge_model` ("" none, "base" this app's model, or a preset or directory served by a second
    app, `judge_app(app_name, judge_model)`) makes `judge(app_name, judge_model)` work in any
    process for the session's life. A Ray started here has its dashboard on `host` only; Serve
    runs no HTTP proxy (`start`). `before_start` runs once Ray is up and before the engine asks for its
    resources (a check that they can ever be had: an app that cannot be placed waits forever).
    `alone` says the engine is all the session does (a screen, make-data): on a local Ray started
    here its replicas share every CPU of the machine (Ray gives an actor as many threads as CPUs
    it reserves; the sweep's engine reserves less, beside its training workers).
    `log_dir` ("" none): where each replica of the engine app notes its node (`start`).
    Yields the engine app's handle; on exit deletes the apps, and shuts Ray down if it started it.
    """
    import ray

    owns_ray = not ray.is_initialized()  # tests and notebooks may bring their own session
    if owns_ray:
        if address:
            context = ray.init(address=address, log_to_driver=False)
        else:
            context = ray.init(include_dashboard=True, dashboard_host=host, log_to_driver=False)
        echo(f"Ray dashboard: http://{context.dashboard_url}" if context.dashboard_url else "Ray dashboard: off")
    try:
        if before_start is not None:
            before_start()
        if alone and owns_ray and not address:
            replica = Holds(max(replica.cpu, ray.cluster_resources().get("CPU", 0) / spec.replicas), replica.gpu)
            echo(f"the engine has this machine to itself: {replica.cpu:g} CPUs a replica")
        echo(f"starting the evaluation engine (Ray Serve + {spec.name}) ...")
        engine = start(app_name, model_path, spec, replica, log_dir=log_dir)
        try:
            with contextlib.ExitStack() as apps:
                if judge_model not in ("", "base"):
                    echo(f"starting the judge ({judge_model}) ...")
                    judge_path = models.resolve(judge_model, echo)  # a preset is built (once) here
                    apps.enter_context(model_app(judge_app(app_name, judge_model), judge_path, spec))
                yield engine
        finally:
            stop(app_name)
    finally:
        if owns_ray:
            ray.shutdown()


def start(app_name: str, model_path: str, spec: EngineSpec, replica: Holds,
          replicas: int | None = None, log_dir: str = "") -> EngineHandle:
    """Deploy the engine as Serve app `app_name` (no HTTP route) and return its handle.

    `replicas` (default `spec.replicas`) copies of the engine, each reserving `replica`
    (config.Placement); Serve restarts one that dies, and each start of one is a line in
    `log_dir`/engine-REPLICA.log naming its node (none without `log_dir`). Serve starts without its HTTP proxy:
    every call comes through a handle, and on a loaded machine Serve's controller killed a
    proxy that answered its readiness check late, failing the start (ActorDiedError).
    """
    serve.start(proxy_location="Disabled")
    count = spec.replicas if replicas is None else replicas
    app = Engine.options(num_replicas=count, ray_actor_options=replica.actor_options()).bind(model_path, spec, log_dir)
    return EngineHandle(serve.run(app, name=app_name, route_prefix=None))


@contextlib.contextmanager
def model_app(app_name: str, model_path: str, spec: EngineSpec) -> Iterator:
    """A second engine app for one whole model (a fully fine-tuned snapshot, or a judge): one
    replica reserving config.own_engine (GPUs, no CPU: config/_placement.py says why).

    Yields its handle and deletes the app on exit.
    """
    engine = start(app_name, model_path, spec, own_engine(spec), replicas=1)
    try:
        yield engine
    finally:
        stop(app_name)


def handle(app_name: str) -> EngineHandle:
    """The running app's handle, from any Ray task or actor (e.g. a Tune trial)."""
    return EngineHandle(serve.get_app_handle(app_name))


def stop(app_name: str) -> None:
    serve.delete(app_name)


def judge_app(app_name: str, judge_model: str) -> str | None:
    """The app that serves the judge of session `app_name`: itself for "base", None for no judge."""
    if not judge_model:
        return None
    return app_name if judge_model == "base" else f"{app_name}-judge"


def judge(app_name: str, judge_model: str) -> Judge | None:
    """The judge of session `app_name` started with `judge_model`, from any process; None if none."""
    name = judge_app(app_name, judge_model)
    return Judge(handle(name)) if name else None
