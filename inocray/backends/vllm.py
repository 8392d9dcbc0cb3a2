"""vLLM backend: the offline `LLM` with LoRA enabled; adapters are registered by name on first use."""

from __future__ import annotations

import os

from inocray.backends import GenerateRequest, adapter_version, chat_seed, most_likely
from inocray.data import render
from inocray.spec import EngineSpec

WARM_CHAT = [{"role": "user", "content": ""}]


class VllmBackend:
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
        self._adapter_ids: dict[str, int] = {}  # adapter version -> vLLM's integer id
        self.generated_tokens = 0

    def generate(self, request: GenerateRequest) -> list[list[str]]:
        from vllm import SamplingParams

        params = [
            SamplingParams(
                n=request.samples,
                temperature=request.temperature,
                max_tokens=request.max_tokens,
                seed=chat_seed(request.seed, i),
            )
            for i in range(len(request.chats))
        ]
        outputs = self._run(request.chats, params, request.adapter, request.adapter_path)
        self.generated_tokens += sum(len(c.token_ids) for out in outputs for c in out.outputs)
        return [[c.text for c in out.outputs] for out in outputs]

    def top_logprobs(self, chats, k, adapter=None, adapter_path=None) -> list[dict[str, float]]:
        from vllm import SamplingParams

        # logprobs are the model's raw ones (vLLM's default logprobs_mode), before temperature.
        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=k)
        outputs = self._run(chats, params, adapter, adapter_path)
        # The first token's dict holds the top k and the sampled token (greedy: one of them).
        firsts = [out.outputs[0].logprobs[0] for out in outputs]
        return [most_likely(((lp.decoded_token or "", lp.logprob) for lp in first.values()), k) for first in firsts]

    def warm(self, adapter: str, adapter_path: str | None) -> None:
        self.generate(GenerateRequest([WARM_CHAT], 1, 1, 0.0, adapter=adapter, adapter_path=adapter_path))

    def _run(self, chats, params, adapter, adapter_path):
        from vllm.lora.request import LoRARequest

        lora = None
        if adapter is not None:
            key = adapter_version(adapter, adapter_path)
            lora = LoRARequest(adapter, self._adapter_ids.setdefault(key, len(self._adapter_ids) + 1), adapter_path)
        prompts = [{"prompt_token_ids": render(self.tokenizer, chat)} for chat in chats]
        return self.llm.generate(prompts, params, lora_request=lora, use_tqdm=False)
