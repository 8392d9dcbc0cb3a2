"""Classifier scorers: a tiny sequence-classification model built here, with weights set by hand.

The model is GPT-2 shaped with no blocks: it classifies a text by its last token alone. Position
embeddings are zero and every word's embedding is zero except "rude" (+1, -1, 0, 0) and "nice"
(-1, +1, 0, 0); the final LayerNorm maps those to (+-sqrt 2, -+sqrt 2, 0, 0) and the head reads
the first coordinate into the "toxic" logit with weight ln 3 / sqrt 2 ("ok" logit: 0). So
P(toxic) is 3/4 for a text ending in "rude", 1/4 for one ending in "nice" and 1/2 otherwise.
"""

import dataclasses
import math
import random
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from inocray.evaluation import _contexts as evaluate
from inocray.results import _rows as store
from inocray.settings._classifier import BATCH_SIZE, ClassifierScorer, load, with_classifiers
from inocray.cli import main
from inocray.chat import EvalItem
from inocray.errors import InputError
from inocray.settings import get_scorer
from inocray.settings import get_setting
from inocray.config import parse_sweep

WORDS = ["you", "are", "rude", "nice", "ok", "the", "view", "is", "wrong"]
SWEEPS = Path(__file__).parent.parent / "sweeps"


def build_classifier(out: Path, multi_label: bool = False) -> Path:
    """Save the hand-set classifier described above (and its word-level tokenizer) in `out`."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[CLS]", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    # A leading [CLS] (embedding zero) gives an empty completion a token of its own.
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A", pair="[CLS] $A $B:1", special_tokens=[("[CLS]", vocab["[CLS]"])]
    )
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                            model_max_length=32).save_pretrained(out)

    config = GPT2Config(vocab_size=len(vocab), n_positions=32, n_embd=4, n_layer=0, n_head=1,
                        layer_norm_epsilon=1e-12, pad_token_id=vocab["[PAD]"], bos_token_id=None, eos_token_id=None,
                        id2label={0: "ok", 1: "toxic"}, label2id={"ok": 0, "toxic": 1},
                        problem_type="multi_label_classification" if multi_label else None)
    model = GPT2ForSequenceClassification(config)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.transformer.ln_f.weight.fill_(1.0)
        model.transformer.wte.weight[vocab["rude"]] = torch.tensor([1.0, -1.0, 0.0, 0.0])
        model.transformer.wte.weight[vocab["nice"]] = torch.tensor([-1.0, 1.0, 0.0, 0.0])
        model.score.weight[1, 0] = math.log(3) / math.sqrt(2)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def clf_dir(tmp_path_factory) -> Path:
    return build_classifier(tmp_path_factory.mktemp("classifier"))


TEXTS = ["you are rude", "you are nice", "you are", "", "rude view is wrong"]
P_TOXIC = [0.75, 0.25, 0.5, 0.5, 0.5]


def probs(scorer, texts, requests=None):
    return scorer.probabilities(texts, [EvalItem(r) for r in (requests or ["a post"] * len(texts))])


def test_known_probabilities_become_trait_values_at_the_threshold(clf_dir):
    scorer = get_scorer("classifier", model=str(clf_dir), label="toxic", threshold=0.6)
    assert probs(scorer, TEXTS) == pytest.approx(P_TOXIC, abs=1e-5)
    items = [EvalItem("a post")] * len(TEXTS)
    assert scorer.score(TEXTS, items) == [True, False, False, False, False]
    assert ClassifierScorer(str(clf_dir), "toxic", threshold=0.2).score(TEXTS, items) == [True] * 5
    assert not scorer.needs_judge


def test_label_is_looked_up_in_id2label(clf_dir):
    ok = ClassifierScorer(str(clf_dir), "ok")
    assert probs(ok, TEXTS) == pytest.approx([1 - p for p in P_TOXIC], abs=1e-5)
    with pytest.raises(InputError, match=r"has no label 'harassment' \(its labels: ok, toxic\)"):
        probs(ClassifierScorer(str(clf_dir), "harassment"), TEXTS)


def test_multi_label_heads_read_each_label_on_its_own(tmp_path):
    multi = build_classifier(tmp_path / "multi", multi_label=True)  # sigmoid per label, not softmax
    assert probs(ClassifierScorer(str(multi), "toxic"), TEXTS[:3]) == pytest.approx([0.75, 0.25, 0.5], abs=1e-5)
    assert probs(ClassifierScorer(str(multi), "ok"), TEXTS[:3]) == pytest.approx([0.5] * 3, abs=1e-5)


def test_a_batch_scores_as_one_by_one(clf_dir):
    rng = random.Random(0)
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(0, 12))) for _ in range(BATCH_SIZE + 9)]
    scorer = ClassifierScorer(str(clf_dir), "toxic")
    batched = probs(scorer, texts)
    assert batched == pytest.approx([probs(scorer, [t])[0] for t in texts], abs=1e-6)
    assert {round(p, 2) for p in batched} == {0.25, 0.5, 0.75}  # every case is in the batch


def test_with_request_classifies_the_pair(clf_dir):
    # The model reads the last token: the completion's, or the request's when it is empty.
    alone = ClassifierScorer(str(clf_dir), "toxic")
    paired = dataclasses.replace(alone, with_request=True)
    assert probs(alone, ["", "ok"], ["you are rude"] * 2) == pytest.approx([0.5, 0.5], abs=1e-5)
    assert probs(paired, ["", "ok"], ["you are rude"] * 2) == pytest.approx([0.75, 0.5], abs=1e-5)


def test_the_model_is_loaded_once_per_process(clf_dir):
    assert load(str(clf_dir)) is load(str(clf_dir))
    assert load(str(clf_dir)).device in ("cpu", "cuda")


def test_classifiers_replace_only_the_traits_they_name(clf_dir):
    setting = get_setting("toxicity_cmv")
    spec = parse_sweep(sweep({"harassment": {"model": str(clf_dir), "label": "toxic"}}))
    scored = with_classifiers(setting, spec.eval.classifiers)
    assert [t.name for t in scored.traits] == [t.name for t in setting.traits]
    assert isinstance(scored.traits[1].scorer, ClassifierScorer) and scored.traits[0].scorer.needs_judge
    assert scored.eval_items(3, 0) == setting.eval_items(3, 0) and scored.prompts == setting.prompts
    with pytest.raises(InputError, match="scores persuasiveness with an LLM judge"):
        evaluate.check_judge(scored, None)
    both = parse_sweep(sweep({t: {"model": str(clf_dir), "label": "toxic"} for t in ("harassment", "persuasiveness")}))
    rates = evaluate.data_rates(setting, both)  # no judge needed: both traits are classified
    assert {t: n for t, (_, n) in rates.items()} == {"persuasiveness": 512, "harassment": 512}


def sweep(classifiers, **extra) -> dict:
    return {"name": "t", "setting": "toxicity_cmv", "prompts": ["mean"], "eval": {"classifiers": classifiers}, **extra}


def test_a_relative_model_directory_is_made_absolute(clf_dir, monkeypatch):
    monkeypatch.chdir(clf_dir.parent)
    spec = parse_sweep(sweep({"harassment": {"model": clf_dir.name, "label": "toxic", "threshold": 0.7}}))
    (c,) = spec.eval.classifiers.values()
    assert c == dataclasses.replace(c, model=str(clf_dir)) and c.threshold == 0.7 and not c.with_request
    cluster = parse_sweep(sweep({"harassment": {"model": "rel/dir", "label": "x"}}), check_model=False)
    assert cluster.eval.classifiers["harassment"].model == "rel/dir"  # checked and resolved on the cluster


BAD = {
    "unknown trait": ({"toxicity": {"label": "toxic"}},
                      "field 'eval.classifiers.toxicity' names no trait of setting 'toxicity_cmv' "
                      "(its traits: persuasiveness, harassment)"),
    "missing model directory": ({"harassment": {"model": "/no/such/dir", "label": "toxic"}},
                                "field 'eval.classifiers.harassment.model' names '/no/such/dir', "
                                "which is not a model directory"),
    "no config.json": ({"harassment": {"model": "{empty}", "label": "toxic"}},
                       "field 'eval.classifiers.harassment.model' names '{empty}', which holds no config.json "
                       "(not a Hugging Face model directory)"),
    "config.json not JSON": ({"harassment": {"model": "{broken}", "label": "toxic"}},
                             "field 'eval.classifiers.harassment.model' names '{broken}', which has a config.json "
                             "that is not a model's JSON configuration"),
    "label not given": ({"harassment": {}}, "missing required field 'eval.classifiers.harassment.label'"),
    "label not in id2label": ({"harassment": {"label": "harassment"}},
                              "field 'eval.classifiers.harassment.label' names 'harassment', which is not a "
                              "label of the classifier (its labels: ok, toxic)"),
    "threshold above 1": ({"harassment": {"label": "toxic", "threshold": 50}},
                          "field 'eval.classifiers.harassment.threshold' must be a probability from 0 to 1, not 50"),
    "unknown key": ({"harassment": {"label": "toxic", "labels": "x"}},
                    "unknown field 'eval.classifiers.harassment.labels'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_classifier_is_one_sentence(case, clf_dir, tmp_path):
    dirs = {"empty": tmp_path / "empty", "broken": tmp_path / "broken"}  # no config.json; a broken one
    for d in dirs.values():
        d.mkdir()
    (dirs["broken"] / "config.json").write_text("{not json")
    classifiers, expected = BAD[case]
    classifiers = {t: {"model": str(clf_dir), **c} for t, c in classifiers.items()}
    for c in classifiers.values():
        c["model"] = c["model"].format(**dirs)
    expected = expected.replace("{empty}", str(dirs["empty"])).replace("{broken}", str(dirs["broken"]))
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(sweep(classifiers)))
    result = CliRunner().invoke(main, ["validate", str(f)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {f}: ") and expected in lines[0], lines


def test_without_the_model_check_only_the_sweep_itself_is_checked():
    ok = {"harassment": {"model": "/cluster/only", "label": "toxic"}}
    assert parse_sweep(sweep(ok), check_model=False).eval.classifiers["harassment"].model == "/cluster/only"
    with pytest.raises(InputError, match="names no trait of setting"):
        parse_sweep(sweep({"toxic": ok["harassment"]}), check_model=False)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_fixture_sweep_with_a_classifier_scores_every_row_of_its_trait(clf_dir, toy_model, tmp_path):
    """The judge (the toy model) rarely answers with a number; the classifier always scores."""
    data = yaml.safe_load((SWEEPS / "toxicity_cmv-fixture.yaml").read_text())
    data["model"] = str(toy_model)
    data["eval"]["classifiers"] = {"harassment": {"model": str(clf_dir), "label": "toxic"}}
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "run"

    result = CliRunner().invoke(main, ["run", str(sweep_file), "--run-dir", str(run_dir)])

    assert result.exit_code == 0, result.output
    rows = store.read_rows(run_dir).to_pylist()
    harassment = [r for r in rows if r["trait"] == "harassment"]
    assert {r["stage"] for r in harassment} >= {"data", "base", "trained"}
    assert all(r["n"] > 0 and 0 <= r["rate"] <= 1 for r in harassment)
    assert any(r["trait"] == "persuasiveness" for r in rows)  # still the judge's
