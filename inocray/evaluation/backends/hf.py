"""transformers backend: the model in plain PyTorch, peft adapters loaded by name.

For models vLLM cannot load, and on CPU, where for a tiny model it is the faster engine.
Sampling draws each chat's tokens from its own torch Generator, seeded as the vLLM backend
seeds its chats; the random streams differ between the two, greedy completions agree.
Concurrent callers take turns (a lock): the model and its active adapter are shared state.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections import OrderedDict

import torch

from inocray.evaluation.backends import GenerateRequest, adapter_version, chat_seed, most_likely
from inocray.chat import render
from inocray.config import EngineSpec

BATCH_ROWS = 64  # sequences per forward pass (a request's chats x samples, in chunks of whole chats)


class HFBackend:
    def __init__(self, model_path: str, spec: EngineSpec) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = "cuda" if spec.num_gpus and torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        dtype = "auto" if spec.dtype == "auto" else getattr(torch, spec.dtype)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        self.eos = ({*(eos if isinstance(eos, list) else [eos]), self.tokenizer.eos_token_id}) - {None}
        pad = self.tokenizer.pad_token_id
        self.pad = pad if pad is not None else next(iter(self.eos))
        self.max_loras = spec.max_loras
        self._loaded: OrderedDict[str, str] = OrderedDict()  # adapter version -> peft name, least recent first
        self._names = 0  # adapters ever loaded: names them
        self.generated_tokens = 0
        self._lock = threading.Lock()

    def generate(self, request: GenerateRequest) -> list[list[str]]:
        with self._lock:
            return self._generate(request)

    def top_logprobs(self, chats, k, adapter=None, adapter_path=None) -> list[dict[str, float]]:
        with self._lock:
            return self._top_logprobs(chats, k, adapter, adapter_path)

    @torch.inference_mode()
    def _generate(self, request: GenerateRequest) -> list[list[str]]:
        self._use(request.adapter, request.adapter_path)
        n, out = request.samples, []
        per_chunk = max(1, BATCH_ROWS // n)
        for start in range(0, len(request.chats), per_chunk):
            chats = request.chats[start : start + per_chunk]
            generators = [
                torch.Generator(self.device).manual_seed(chat_seed(request.seed, start + i)) for i in range(len(chats))
            ]
            rows = self._sample([render(self.tokenizer, c) for c in chats for _ in range(n)], request, generators)
            out += [rows[i * n : (i + 1) * n] for i in range(len(chats))]
        return out

    @torch.inference_mode()
    def _top_logprobs(self, chats, k, adapter, adapter_path) -> list[dict[str, float]]:
        self._use(adapter, adapter_path)
        out = []
        for start in range(0, len(chats), BATCH_ROWS):
            prompts = [render(self.tokenizer, c) for c in chats[start : start + BATCH_ROWS]]
            logits, _ = self._forward(*self._left_padded(prompts), None)
            top = torch.log_softmax(logits, -1).topk(k)
            for prompt, idx, val in zip(prompts, top.indices.tolist(), top.values.tolist()):
                texts = (self._continuation(prompt, [t], skip_special=False) for t in idx)
                out.append(most_likely(zip(texts, val), k))
        return out

    def sequence_logprobs(self, prompts, continuations) -> list[list[float]]:
        with self._lock:
            return self._sequence_logprobs(prompts, continuations)

    @torch.inference_mode()
    def _sequence_logprobs(self, prompts, continuations) -> list[list[float]]:
        """Teacher forcing in batches of similar length (little padding); the logits are computed
        for the continuations' columns only (the vocabulary projection is much of a small model's
        cost), and each token's log-probability is its logit less the log-sum-exp of its column."""
        self._use(None, None)
        order = sorted(range(len(prompts)), key=lambda i: -(len(prompts[i]) + len(continuations[i])))
        out: list[list[float]] = [[] for _ in prompts]
        for start in range(0, len(order), BATCH_ROWS):
            rows = order[start : start + BATCH_ROWS]
            ids, mask = self._left_padded([list(prompts[i]) + list(continuations[i]) for i in rows])
            keep = max(len(continuations[i]) for i in rows) + 1  # left padding: the continuations end every row
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                logits_to_keep=keep).logits.float()
            # column j of `logits` predicts token width - keep + j + 1
            targets = ids[:, -keep + 1:]
            taken = logits[:, :-1].gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits[:, :-1].logsumexp(-1)
            for row, i in enumerate(rows):
                out[i] = taken[row, taken.shape[1] - len(continuations[i]):].tolist()
        return out

    def _use(self, adapter: str | None, adapter_path: str | None) -> None:
        """Make `adapter` the active one (loading it, evicting the least recent beyond max_loras), or none."""
        if adapter is None:
            if self._loaded:
                self.model.disable_adapters()
            return
        key = adapter_version(adapter, adapter_path)
        if key not in self._loaded:
            if len(self._loaded) >= self.max_loras:
                self.model.delete_adapter(self._loaded.popitem(last=False)[1])
            # peft adapter names become module keys, which cannot hold the dots of a path.
            self._names += 1
            name = f"adapter{self._names}"
            with _quiet("transformers.integrations.peft"), warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Already found a `peft_config`")  # several adapters: meant
                self.model.load_adapter(adapter_path, adapter_name=name)
            self._loaded[key] = name
        self._loaded.move_to_end(key)
        self.model.set_adapter(self._loaded[key])
        self.model.enable_adapters()
        self.model.eval()

    def _sample(self, prompts: list[list[int]], request: GenerateRequest, generators: list) -> list[str]:
        """One completion per prompt; prompts come in runs of `request.samples` per generator."""
        ids, mask = self._left_padded(prompts)
        done = torch.zeros(len(prompts), dtype=torch.bool, device=self.device)
        eos = torch.tensor(sorted(self.eos), device=self.device)
        picked, past = [], None
        for _ in range(request.max_tokens):
            logits, past = self._forward(ids, mask, past)  # logits: [rows, vocab]
            token = torch.where(done, self.pad, self._pick(logits, request.temperature, generators))
            picked.append(token)
            done |= torch.isin(token, eos)
            if done.all():
                break
            ids = token[:, None]
            mask = torch.cat([mask, torch.ones_like(ids)], dim=1)
        texts = []
        for prompt, row in zip(prompts, torch.stack(picked, dim=1).tolist()):
            stop = next((i for i, t in enumerate(row) if t in self.eos), len(row))
            self.generated_tokens += min(stop + 1, len(row))  # the EOS, as vLLM counts it
            texts.append(self._continuation(prompt, row[:stop]))
        return texts

    def _continuation(self, prompt: list[int], tokens: list[int], skip_special: bool = True) -> str:
        """The text `tokens` add after `prompt`, decoded as vLLM does.

        A token's text can depend on what precedes it (a word-start marker decodes to a space
        only after other text), so it is decoded as a step of a stream primed with the prompt.
        """
        from tokenizers.decoders import DecodeStream

        stream = DecodeStream(ids=prompt, skip_special_tokens=skip_special)
        return "".join(stream.step(self.tokenizer.backend_tokenizer, t) or "" for t in tokens)

    def _pick(self, logits: torch.Tensor, temperature: float, generators: list) -> torch.Tensor:
        if temperature == 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits / temperature, dim=-1)
        n = len(probs) // len(generators)
        return torch.cat(
            [torch.multinomial(probs[i * n : (i + 1) * n], 1, generator=g)[:, 0] for i, g in enumerate(generators)]
        )

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, past):
        """Logits of the last position ([rows, vocab], float32) and the KV cache."""
        # Left padding: positions count real tokens only, as if each row were alone.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1] :]
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=past, use_cache=True
        )
        return out.logits[:, -1].float(), out.past_key_values

    def _left_padded(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(map(len, prompts))
        ids = [[self.pad] * (width - len(p)) + p for p in prompts]
        mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
        return torch.tensor(ids, device=self.device), torch.tensor(mask, device=self.device)


@contextlib.contextmanager
def _quiet(logger_name: str):
    """Warnings of `logger_name` off for the block; errors still show and exceptions still raise.

    transformers 5.19's load report on `load_adapter` lists every adapter loaded before as
    "MISSING ... newly initialized"; they are kept as they were (tests/test_serve.py checks it).
    """
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
