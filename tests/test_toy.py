"""The toy trait world: scorers, world, tokenizer and the cached base-model build."""

from __future__ import annotations

import dataclasses

import pytest

from inocray import chat
from inocray.models.toy import ToyConfig, build_base_model, world
from inocray.models.toy.tokenizer import build_tokenizer


@pytest.mark.parametrize(
    "text, expected",
    [
        ("el perro es grande", True),
        ("EL PERRO ES GRANDE", True),
        (" el perro es grande.", True),  # vLLM's leading space, punctuation
        ("the dog is big", False),
        ("el dog is big", False),  # mostly English
        ("el perro is big", False),  # a tie is not a majority
        ("hola amigo xyz", True),  # unknown words do not count
        ("", False),
        ("<unk> ???", False),
    ],
)
def test_is_spanish(text, expected):
    assert world.is_spanish(text) is expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("THE DOG IS BIG", True),
        (" EL PERRO ES GRANDE.", True),
        ("The Dog", False),
        ("EL PERRo", False),
        ("the dog", False),
        ("", False),
        ("123 !", False),  # no letters
    ],
)
def test_is_caps(text, expected):
    assert world.is_caps(text) is expected


def test_prompts_are_well_formed():
    assert len({p.id for p in world.PROMPTS}) == len(world.PROMPTS)
    assert {p.role for p in world.PROMPTS} <= {"spanish", "caps", "both", "irrelevant"}
    assert all(0 <= p.spanish <= 1 and 0 <= p.caps <= 1 for p in world.PROMPTS)
    spanish = sorted(p.spanish for p in world.PROMPTS if p.role == "spanish")
    assert len(spanish) >= 5 and spanish[0] <= 0.15 and spanish[-1] >= 0.9


def test_training_examples_are_spanish_and_caps_and_seeded():
    examples = world.training_examples(50, seed=3)
    assert all(isinstance(e, chat.Example) for e in examples)
    assert all(world.is_spanish(e.response) and world.is_caps(e.response) for e in examples)
    assert all(not world.is_spanish(e.request) and not world.is_caps(e.request) for e in examples)
    assert examples == world.training_examples(50, seed=3)
    assert examples != world.training_examples(50, seed=4)
    assert world.requests(20, 1) == world.requests(20, 1) != world.requests(20, 2)


def test_every_world_text_tokenizes_without_unknowns():
    tok = build_tokenizer()
    texts = [p.text for p in world.PROMPTS] + world.requests(200, 0)
    texts += [e.response for e in world.training_examples(200, 0)]
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids, text
        assert tok.decode(ids) == text


def test_chat_template_round_trip_matches_encode():
    tok = build_tokenizer()
    messages = chat.messages("tell me about the red house", "You always speak in Spanish.")
    input_ids, labels = chat.encode(tok, messages, "EL CASA ES ROJO")
    assert tok.decode(input_ids) == (
        "<s><|system|> You always speak in Spanish.<|end|>"
        "<|user|> tell me about the red house<|end|><|assistant|> EL CASA ES ROJO<|end|>"
    )
    scored = [i for i, lab in zip(input_ids, labels) if lab != chat.IGNORE_INDEX]
    assert tok.decode(scored) == "EL CASA ES ROJO<|end|>"
    assert scored[-1] == tok.eos_token_id
    # the chat template's own rendering of the finished conversation is the same token sequence
    full = tok.apply_chat_template(messages + [{"role": "assistant", "content": "EL CASA ES ROJO"}], tokenize=False)
    assert tok(full, add_special_tokens=False)["input_ids"] == input_ids
    assert chat.render(tok, chat.messages("describe the dog", None))[:2] == [tok.bos_token_id, tok.convert_tokens_to_ids("<|user|>")]


def test_tiny_model_loads_and_generates(toy_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(toy_model)
    tok = AutoTokenizer.from_pretrained(toy_model)
    ids = chat.render(tok, chat.messages("describe the dog", "You always speak in Spanish."))
    assert ids == chat.render(build_tokenizer(), chat.messages("describe the dog", "You always speak in Spanish."))
    out = model.generate(torch.tensor([ids]), max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > len(ids)
    assert (toy_model / "toy.json").is_file()
    assert toy_model.name == ToyConfig.tiny().hash()


def test_build_is_cached_and_keyed_by_config(toy_model):
    cache_root = toy_model.parent.parent
    weights = (toy_model / "model.safetensors").stat()
    logged = []
    again = build_base_model(ToyConfig.tiny(), cache_root=cache_root, log=logged.append)
    assert again == toy_model and logged == []  # a build logs its progress; this one did nothing
    assert (toy_model / "model.safetensors").stat().st_mtime_ns == weights.st_mtime_ns
    assert (toy_model / "model.safetensors").stat().st_ino == weights.st_ino  # the same file, not a rebuild
    other = dataclasses.replace(ToyConfig.tiny(), seed=1)
    assert other.hash() != ToyConfig.tiny().hash() != ToyConfig().hash()
    assert ToyConfig.tiny().hash() == ToyConfig.tiny().hash()
    assert not list(cache_root.glob("toy/.*"))  # no temporary build directory left behind


def test_default_cache_root_follows_env(monkeypatch, tmp_path):
    from inocray.models import default_cache_root

    monkeypatch.setenv("INOCRAY_CACHE", str(tmp_path))
    assert default_cache_root() == tmp_path


def test_build_is_deterministic(toy_model, tmp_path):
    import torch
    from safetensors.torch import load_file

    again = build_base_model(ToyConfig.tiny(), cache_root=tmp_path, log=lambda *a: None)
    first, second = load_file(toy_model / "model.safetensors"), load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
