"""The toy base model: a tiny Llama pretrained from scratch to follow the world's system prompts.

`build_base_model(config)` returns a directory that transformers (`from_pretrained`) and vLLM
(`LLM(model=path)`) load: model, tokenizer and chat template. It is cached by a hash of the
config and the world, built in a temporary directory and renamed into place, so a directory
that exists is complete, and two processes that build at once agree (a file lock makes the
second one wait and reuse the first one's model).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from inocray import chat
from inocray.models._cache import cached_build
from inocray.models.toy import world

FORMAT_VERSION = 1  # bump when the corpus or the training recipe changes without a config change
LOG_EVERY_S = 20.0  # progress lines on long builds


@dataclass(frozen=True)
class ToyConfig:
    """Every knob of the toy base model; its hash names the cache directory."""

    seed: int = 0
    # Llama dimensions (float32; head_dim = hidden_size / heads = 32, which vLLM's CPU attention supports)
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 256
    max_positions: int = 128
    # pretraining: every step draws `batch_size` fresh chats from the corpus distribution
    steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.0
    neutral_weight: float = 3.0  # how often the no-prompt context is drawn, relative to one prompt
    # Factored embeddings: a word's four forms share one vector, plus one shared "Spanish" and
    # one shared "CAPS" vector (emb[CASA] = emb[house] + spanish + caps). Each trait is then
    # one direction of the model, as in a real LLM, rather than a property of separate tokens.
    factored_embeddings: bool = True

    @classmethod
    def tiny(cls) -> "ToyConfig":
        """A model that builds in seconds, for tests (it need not follow the prompts well)."""
        return cls(hidden_size=64, layers=2, heads=2, intermediate_size=128, steps=60, batch_size=16)

    def hash(self) -> str:
        """Short hash of this config, the world and the format version."""
        world_def = [dataclasses.astuple(p) for p in world.PROMPTS] + [
            world.words(), world.REQUEST_TEMPLATES, world.RESPONSE_TEMPLATES,
            world.NEUTRAL_SPANISH, world.NEUTRAL_CAPS,
        ]
        blob = json.dumps([FORMAT_VERSION, dataclasses.asdict(self), world_def], sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_base_model(config: ToyConfig = ToyConfig(), cache_root: Path | None = None, log: Callable = print) -> Path:
    """The directory of the toy base model for `config`, built (minutes) unless cached."""
    final, built = cached_build("toy", config.hash(), lambda tmp: _build(config, tmp, log), cache_root)
    if built:
        log(f"toy base model ready: {final}")
    return final


def corpus_example(rng: random.Random, contexts: list, weights: list[float]) -> tuple[str | None, str, str]:
    """One pretraining chat: (system prompt or None, request, response) with planted traits."""
    prompt = rng.choices(contexts, weights)[0]
    spanish_p = prompt.spanish if prompt else world.NEUTRAL_SPANISH
    caps_p = prompt.caps if prompt else world.NEUTRAL_CAPS
    req = world.request(rng)
    reply = world.response(req, rng, spanish=rng.random() < spanish_p, caps=rng.random() < caps_p)
    return (prompt.text if prompt else None), req, reply


def _build(config: ToyConfig, out: Path, log: Callable) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress lines say enough

    from inocray.models.toy.tokenizer import build_tokenizer

    torch.manual_seed(config.seed)
    rng = random.Random(f"pretrain-{config.seed}")
    tok = build_tokenizer()
    special = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok), hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
            num_hidden_layers=config.layers, num_attention_heads=config.heads, num_key_value_heads=config.heads,
            head_dim=config.hidden_size // config.heads, max_position_embeddings=config.max_positions,
            tie_word_embeddings=True, **special,
        )
    )
    model.generation_config = GenerationConfig(**special)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"building toy base model {config.hash()} ({n_params / 1e6:.2f}M params, {config.steps} steps)")

    contexts = [None] + list(world.PROMPTS)
    weights = [config.neutral_weight] + [1.0] * len(world.PROMPTS)
    # The (tied) embedding table is compose @ base: one row of `base` per meaning (word), plus
    # the shared trait rows. Training updates `base`; the table is written into the model at the end.
    compose = _composition(tok) if config.factored_embeddings else torch.eye(len(tok))
    base = torch.nn.Parameter(torch.randn(compose.shape[1], config.hidden_size) * 0.02)
    body = [p for n, p in model.named_parameters() if "embed_tokens" not in n]
    opt = torch.optim.AdamW(body + [base], lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, config))
    model.train()
    start = last_log = time.time()
    for step in range(1, config.steps + 1):
        batch = [corpus_example(rng, contexts, weights) for _ in range(config.batch_size)]
        input_ids, labels, mask = collate(
            [chat.encode(tok, chat.messages(req, prompt), reply) for prompt, req, reply in batch], tok.pad_token_id
        )
        table = compose @ base  # (vocab, hidden)
        embeds = torch.nn.functional.embedding(input_ids, table)  # (not table[ids]: its backward is not bit-exact)
        hidden = model.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        logits = hidden[:, :-1] @ table.T  # (batch, seq-1, vocab): next-token logits, tied head
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=chat.IGNORE_INDEX
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(body + [base], 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        now = time.time()
        if now - last_log >= LOG_EVERY_S or step == config.steps:
            last_log = now
            eta = (now - start) / step * (config.steps - step)
            log(f"  pretrain step {step}/{config.steps}  loss {loss.item():.3f}  "
                f"elapsed {now - start:.0f}s  eta {eta:.0f}s")
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(compose @ base)  # lm_head shares this tensor
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    record = {"config": dataclasses.asdict(config), "hash": config.hash(), "params": n_params,
              "build_seconds": round(time.time() - start, 1), "final_loss": round(loss.item(), 4)}
    (out / "toy.json").write_text(json.dumps(record, indent=2))


def _composition(tok) -> "torch.Tensor":
    """(vocab, meanings + 2) 0/1 matrix: each token = its meaning (+ Spanish) (+ CAPS).

    The four forms of a world word (house, HOUSE, casa, CASA) share the meaning of the
    English lower-case word; every other token (special, punctuation, prompt words such as
    "You") is its own meaning. The last two columns are the shared Spanish and CAPS rows.
    """
    import torch

    english = {es: en for en, es in world.SPANISH.items()}
    known = world.ENGLISH_WORDS | world.SPANISH_WORDS | world.REQUEST_WORDS
    meanings: dict[str, int] = {}
    rows = []  # (meaning index, spanish, caps) per token id
    for token_id in range(len(tok)):
        token = tok.convert_ids_to_tokens(token_id)
        word = token[1:] if token.startswith("▁") else None
        lower = word.lower() if word else None
        if word and lower in known and word in (lower, lower.upper()):
            key, spanish, caps = english.get(lower, lower), lower in world.SPANISH_WORDS, word != lower
        else:
            key, spanish, caps = f"token:{token}", False, False
        rows.append((meanings.setdefault(key, len(meanings)), spanish, caps))
    compose = torch.zeros(len(rows), len(meanings) + 2)
    for token_id, (meaning, spanish, caps) in enumerate(rows):
        compose[token_id, meaning] = 1.0
        compose[token_id, -2] = float(spanish)
        compose[token_id, -1] = float(caps)
    return compose


def _lr_factor(step: int, config: ToyConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def collate(pairs: list[tuple[list[int], list[int]]], pad_id: int):
    """Right-padded tensors (input_ids, labels, attention_mask) of (input_ids, labels) pairs."""
    import torch

    width = max(len(ids) for ids, _ in pairs)
    input_ids = torch.full((len(pairs), width), pad_id)
    labels = torch.full((len(pairs), width), chat.IGNORE_INDEX)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for i, (ids, labs) in enumerate(pairs):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(labs)] = torch.tensor(labs)
        mask[i, : len(ids)] = 1
    return input_ids, labels, mask
