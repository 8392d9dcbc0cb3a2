"""vLLM backend: one engine stepped by one thread, every caller's requests in its running batch.

vLLM's offline `LLM.generate` runs its engine until the requests it was given finish, so two
callers would take turns. Here a single thread owns the `LLM` (built there too: every vLLM call
comes from that one thread) and loops: take what callers have queued, add it to the engine,
take one engine step. vLLM's scheduler batches whatever is unfinished at each step (continuous
batching), whatever adapter each request names, up to `max_loras` adapters per batch; the
requests of other adapters wait in its queue. A caller blocks on its own future only.

A chat's sampling seed (`chat_seed`) travels in its own SamplingParams, so the tokens drawn
for it come from its own generator whatever else shares the batch. The engine core runs in this
process (VLLM_ENABLE_V1_MULTIPROCESSING=0): it starts in seconds, and dies with the replica.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from inocray.evaluation.backends import GenerateRequest, adapter_version, chat_seed, most_likely
from inocray.evaluation.backends.hf import HFBackend
from inocray.chat import render
from inocray.config import EngineSpec

@dataclass(eq=False)  # a job is itself, not its fields: a set of jobs must hash them
class _Job:
    """One caller's prompts, waiting in the queue and then in the engine."""

    prompts: list[dict]
    params: list  # SamplingParams, one per prompt
    lora: object  # LoRARequest or None
    future: Future = field(default_factory=Future)
    outputs: dict = field(default_factory=dict)  # vLLM request id -> RequestOutput
    ids: list[str] = field(default_factory=list)


class VllmBackend:
    def __init__(self, model_path: str, spec: EngineSpec) -> None:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(spec.kv_cache_gib))))
        # One process: the engine core runs in this replica (starts in seconds, not ~20 s).
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self._model_path, self._spec = model_path, spec
        self._scorer = None  # the transformers copy that scores whole sequences (sequence_logprobs)
        self.generated_tokens = 0
        self._adapter_ids: dict[str, int] = {}  # adapter version -> vLLM's integer id
        self._ids_lock = threading.Lock()
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._request_ids = itertools.count()
        started: Future = Future()
        self._thread = threading.Thread(target=self._loop, args=(model_path, spec, started), daemon=True,
                                        name="vllm-engine")
        self._thread.start()
        started.result()  # the engine's construction error, if any, raises here

    def generate(self, request: GenerateRequest) -> list[list[str]]:
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        params = [
            SamplingParams(
                n=request.samples,
                temperature=request.temperature,
                max_tokens=request.max_tokens,
                seed=chat_seed(request.seed, i),
                output_kind=RequestOutputKind.FINAL_ONLY,  # the whole completion, once
            )
            for i in range(len(request.chats))
        ]
        outputs = self._run(request.chats, params, request.adapter, request.adapter_path)
        return [[c.text for c in out.outputs] for out in outputs]

    def top_logprobs(self, chats, k, adapter=None, adapter_path=None) -> list[dict[str, float]]:
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        # logprobs are the model's raw ones (vLLM's default logprobs_mode), before temperature.
        params = [SamplingParams(max_tokens=1, temperature=0.0, logprobs=k, output_kind=RequestOutputKind.FINAL_ONLY)
                  for _ in chats]
        outputs = self._run(chats, params, adapter, adapter_path)
        # The first token's dict holds the top k and the sampled token (greedy: one of them).
        firsts = [out.outputs[0].logprobs[0] for out in outputs]
        return [most_likely(((lp.decoded_token or "", lp.logprob) for lp in first.values()), k) for first in firsts]

    def sequence_logprobs(self, prompts, continuations) -> list[list[float]]:
        """Scored by a transformers copy of the base model, loaded on first use: vLLM 0.32's
        prompt logprobs fail on an engine with LoRA enabled on CPU (its punica CPU kernel gets a
        prompt's hidden states where it expects one row per request), and every inocray engine
        enables LoRA. Without LoRA, vLLM's prompt logprobs agreed with this forward pass
        (docs/analysis.md)."""
        with self._ids_lock:
            if self._scorer is None:
                self._scorer = HFBackend(self._model_path, dataclasses.replace(self._spec, name="transformers"))
        return self._scorer.sequence_logprobs(prompts, continuations)

    def _run(self, chats, params, adapter, adapter_path) -> list:
        """Queue the chats for the engine thread and wait for their outputs, in order."""
        from vllm.lora.request import LoRARequest

        lora = None
        if adapter is not None:
            key = adapter_version(adapter, adapter_path)
            with self._ids_lock:  # callers come from many threads; each version gets one id
                lora_id = self._adapter_ids.setdefault(key, len(self._adapter_ids) + 1)
            lora = LoRARequest(adapter, lora_id, adapter_path)
        if not chats:
            return []
        job = _Job([{"prompt_token_ids": render(self.tokenizer, chat)} for chat in chats], params, lora)
        self._queue.put(job)
        return job.future.result()

    # --- the engine thread ----------------------------------------------------------------------

    def _loop(self, model_path: str, spec: EngineSpec, started: Future) -> None:
        try:
            engine = _new_engine(model_path, spec).llm_engine
        except BaseException as e:  # noqa: BLE001  (raised in the constructor's thread)
            started.set_exception(e)
            return
        started.set_result(None)
        running: dict[str, _Job] = {}  # vLLM request id -> its job
        while True:
            try:
                self._step(engine, running)
            except Exception as e:  # noqa: BLE001  (every caller in the batch learns why; the loop goes on)
                for job in set(running.values()):
                    job.future.set_exception(e)
                engine.abort_request(list(running))
                running.clear()

    def _step(self, engine, running: dict[str, _Job]) -> None:
        """Add what callers queued (waiting for some only while idle), step once, hand out what finished."""
        waiting = [] if engine.has_unfinished_requests() else [self._queue.get()]
        while True:
            try:
                waiting.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for job in waiting:
            try:
                self._add(engine, job, running)
            except Exception as e:  # noqa: BLE001  (a bad request or adapter fails its caller, not the batch)
                job.future.set_exception(e)
                engine.abort_request(job.ids)
                for added in job.ids:
                    running.pop(added)
        for out in engine.step():
            if not out.finished:
                continue
            job = running.pop(out.request_id)
            job.outputs[out.request_id] = out
            if len(job.outputs) == len(job.ids):
                self.generated_tokens += sum(len(c.token_ids) for o in job.outputs.values() for c in o.outputs)
                job.future.set_result([job.outputs[rid] for rid in job.ids])

    def _add(self, engine, job: _Job, running: dict[str, _Job]) -> None:
        """Put the job's prompts in the engine, its adapter loaded first.

        vLLM would otherwise load a new adapter inside the next step, where an adapter it cannot
        load (a missing or corrupt file, a rank over `max_lora_rank`) fails every caller in the batch.
        """
        if job.lora is not None and job.lora.lora_int_id not in engine.list_loras():
            engine.add_lora(job.lora)
        for prompt, params in zip(job.prompts, job.params):
            rid = str(next(self._request_ids))
            engine.add_request(rid, prompt, params, lora_request=job.lora)
            job.ids.append(rid)
            running[rid] = job


def _new_engine(model_path: str, spec: EngineSpec):
    from vllm import LLM

    return LLM(
        model=model_path,
        dtype=spec.dtype,
        max_model_len=spec.max_model_len,
        enable_lora=True,
        max_lora_rank=spec.max_lora_rank,
        max_loras=spec.max_loras,
        max_num_seqs=spec.max_num_seqs,  # vLLM's CPU default, 256, is one toy trial's request
        seed=0,
        # On CPU, a request larger than one step's token budget (4096) would have a prompt
        # split across steps; vLLM then rewinds that chat's seeded generator, which a CPU
        # generator cannot do ("CPU Generator does not use offset"). Unsplit, it waits.
        enable_chunked_prefill=None if spec.num_gpus else False,
    )
