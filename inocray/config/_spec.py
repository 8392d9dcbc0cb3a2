"""The sweep file: its schema, parsed into typed values and checked field by field, and hashed.

A sweep file is YAML (loaded safely) that maps onto `SweepSpec`. Each field's allowed values
are written once, beside the field (`rule`); `build_spec` checks them and the constraints
between fields. This module imports nothing of inocray but the error contract: reading the
file and checking the grid are _parse.py's, the checks against the world _validate.py's (as
torchtune splits config/_parse.py from _validate.py). Every error names the file and the field
in one sentence, before anything runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import operator
import re
import reprlib
import typing
from dataclasses import dataclass, field
from typing import Any

from inocray.errors import InputError

NONE = "none"  # prompt id of the no-prompt control (a sweep file cannot use it for a prompt of its own)
# Probes that are not prompt ids: the setting's own probe prompts, the trial's prompt's first
# paraphrase, and the trial's prompt in each other placement (docs/sweep-file.md, `probes`).
PROBE_DEFAULT, PROBE_PARAPHRASE, PROBE_PLACEMENTS = "default", "paraphrase", "placements"
PLACEMENTS = ("system", "user_prefix", "user_suffix")  # where the prompt goes (chat.messages)
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_SWEEP_BYTES = 1 << 20
MAX_STEPS = 100_000  # optimizer steps of one trial

brief = reprlib.Repr()  # values echoed in errors stay short, whatever the file holds: brief.repr(x)
brief.maxstring = brief.maxother = 120
brief.maxlevel = 2


def rule(default: Any, *, choices: tuple = (), above: float | None = None, least: float | None = None,
         below: float | None = None, most: float | None = None, says: str = "") -> Any:
    """A field with its default and its allowed values: one of `choices`, or a number
    > `above`, >= `least`, < `below`, <= `most`. `says` words the rule when the plain words
    ("must be positive") would not. Checked by `check_fields`; not part of the hash."""
    allowed = {"choices": choices, "above": above, "least": least, "below": below, "most": most, "says": says}
    return field(default=default, metadata={k: v for k, v in allowed.items() if v not in ((), None, "")})


@dataclass(frozen=True)
class LoraSpec:
    r: int = rule(8, above=0)
    alpha: int = rule(16, above=0)
    dropout: float = rule(0.0, least=0, below=1, says="must be in [0, 1)")
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    rslora: bool = False  # rank-stabilised scaling alpha / sqrt(r)


@dataclass(frozen=True)
class TrainSpec:
    method: str = rule("lora", choices=("lora", "full"))  # a peft adapter | every weight
    zero_stage: int = rule(2, choices=(0, 1, 2, 3))  # DeepSpeed ZeRO stage
    lora: LoraSpec = field(default_factory=LoraSpec)
    lr: float = rule(1e-3, above=0)
    # constant | linear | cosine (decay to 0 after warmup)
    lr_schedule: str = rule("constant", choices=("constant", "linear", "cosine"))
    warmup_steps: int = rule(0, least=0)
    steps: int = rule(150, above=0)  # optimizer steps; ignored when `epochs` is set
    epochs: float = rule(0.0, least=0)  # > 0: train this many passes over `examples` instead of `steps`
    batch_size: int = rule(16, above=0)  # examples per optimizer step, over all workers and accumulation
    grad_accum: int = rule(1, above=0)  # micro-batches accumulated per optimizer step
    # auto: bf16 on a GPU that has it, else fp32 | fp32 | bf16
    precision: str = rule("auto", choices=("auto", "fp32", "bf16"))
    checkpoint_every: int = rule(0, least=0)  # save (and evaluate) a checkpoint every N steps; 0 = final only
    checkpoint_each_epoch: bool = False  # also save one at the end of every epoch
    checkpoint_at: list[int] = field(default_factory=list)  # and at these steps (a search's rungs)
    examples: int = rule(512, above=0, most=1_000_000)  # training examples drawn from the setting
    num_workers: int = rule(1, above=0)  # Ray Train workers per trial
    use_gpu: bool = False
    cpus_per_worker: float = rule(0.49, above=0)

    def total_steps(self) -> int:
        """Optimizer steps of the run: `steps`, or `epochs` passes over `examples`."""
        if self.epochs > 0:
            return max(1, math.ceil(self.epochs * self.examples / self.batch_size))
        return self.steps

    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.examples / self.batch_size))

    def checkpoint_steps(self) -> list[int]:
        """The steps after which a checkpoint is saved and evaluated (the last step excluded)."""
        total, marks = self.total_steps(), set()
        if self.checkpoint_every:
            marks |= set(range(self.checkpoint_every, total, self.checkpoint_every))
        if self.checkpoint_each_epoch:
            marks |= set(range(self.steps_per_epoch(), total, self.steps_per_epoch()))
        marks |= {step for step in self.checkpoint_at if 0 < step < total}
        return sorted(marks)


@dataclass(frozen=True)
class ClassifierSpec:
    """A trait scored by a sequence-classification model (inocray.settings._classifier.ClassifierScorer)."""

    model: str  # a local Hugging Face sequence-classification model directory
    label: str  # the label (config.id2label) whose probability is the score, e.g. "toxic"
    # the trait shows at this probability or more
    threshold: float = rule(0.5, least=0, most=1, says="must be a probability from 0 to 1")
    with_request: bool = False  # classify the (request, completion) pair, not the completion alone


@dataclass(frozen=True)
class ApiJudgeSpec:
    """A judge behind an OpenAI-compatible chat-completions endpoint (evaluation/_api_judge.py)."""

    endpoint: str = ""  # the API's base URL, e.g. https://api.openai.com/v1; "" = no API judge
    model: str = ""  # the model the endpoint serves, e.g. gpt-4o
    api_key_env: str = ""  # the environment variable holding the key ("" = send none); never the key
    max_in_flight: int = rule(8, above=0)  # requests at once, per process that judges
    retries: int = rule(5, least=0)  # after a 429, a 5xx, a timeout or a malformed reply
    timeout_s: float = rule(60.0, above=0)  # seconds to wait for one reply


@dataclass(frozen=True)
class EvalSpec:
    requests: int = rule(32, above=0, most=100_000)  # evaluation requests per context
    samples: int = rule(4, above=0, most=1_000)  # completions per request
    max_tokens: int = rule(16, above=0)
    temperature: float = rule(1.0, least=0)
    # training examples the base model's logprob elicitation of each prompt averages over
    # (evaluation/_logprob.py); 0 skips it
    logprob_examples: int = rule(64, least=0, most=100_000)
    judge_model: str = ""  # for judge scorers: "" none, "base" the sweep's model, or a model directory
    judge: ApiJudgeSpec = field(default_factory=ApiJudgeSpec)  # instead of judge_model: an API judge
    # trait name -> the classifier that scores it instead of the setting's own scorer
    classifiers: dict[str, ClassifierSpec] = field(default_factory=dict)


@dataclass(frozen=True)
class WandbSpec:
    project: str = ""  # a W&B project: each trial a run in it, grouped by the sweep hash; "" = none


@dataclass(frozen=True)
class TrackingSpec:
    """Experiment trackers each trial is logged to (run/_tracking.py); not part of the sweep's hash."""

    mlflow: str = ""  # an MLflow tracking URI (file:///path/mlruns, http://host:5000); "" = none
    wandb: WandbSpec = field(default_factory=WandbSpec)


@dataclass(frozen=True)
class EngineSpec:
    name: str = "vllm"  # an engine of registry.BACKENDS: vllm | transformers (for models vLLM cannot load)
    max_lora_rank: int = rule(8, choices=(1, 8, 16, 32, 64, 128, 256, 320, 512))  # the ranks vLLM's LoRA takes
    max_loras: int = rule(4, above=0)
    max_num_seqs: int = rule(1024, above=0)  # sequences in one step of a vLLM engine: several trials' requests
    kv_cache_gib: float = rule(1.0, above=0)
    dtype: str = rule("float32", choices=("auto", "float32", "bfloat16", "float16"))
    max_model_len: int = rule(128, above=0)
    num_cpus: float = 0.5  # per replica
    num_gpus: float = 0.0  # per replica
    # CPU threads of each replica's model: 0 = as many as the CPUs it reserves, at least one
    # (Ray's rule); more lets a replica use cores its reservation leaves to training groups
    # while they wait for the evaluation (evaluation.serve, docs/architecture.md)
    threads: int = rule(0, least=0)
    replicas: int = rule(1, above=0)  # copies of the engine (one per GPU on a cluster); an adapter's calls go to one


@dataclass(frozen=True)
class SandboxSpec:
    # how a setting scored in the code sandbox runs the model's code: "bwrap" (bubblewrap:
    # refused where it cannot be had) or "none" (no isolation: only trusted code)
    isolation: str = rule("bwrap", choices=("bwrap", "none"))


@dataclass(frozen=True)
class DataSpec:
    train: str = ""  # JSONL or Parquet of training rows; "" = the setting's own data
    eval: str = ""  # JSONL or Parquet of evaluation rows; "" = the setting's own data


@dataclass(frozen=True)
class SettingEntry:
    """One setting of a grid sweep (`settings:`): what a single-setting sweep writes at its top.

    An entry leaves out what it shares with the others: a missing key takes the sweep's
    top-level value (`parse_spec`)."""

    setting: str
    prompts: list[str]
    irrelevant: list[str] = field(default_factory=list)
    ptst: list[str] = field(default_factory=list)
    custom_prompts: dict[str, list[str]] = field(default_factory=dict)
    data: DataSpec = field(default_factory=DataSpec)
    placement: str = rule("system", choices=PLACEMENTS)


ENTRY_KEYS = tuple(f.name for f in dataclasses.fields(SettingEntry))


@dataclass(frozen=True)
class SweepSpec:
    name: str
    # One setting (`setting` and `prompts` here), or several (`settings`); see SettingEntry.
    setting: str = ""
    prompts: list[str] = field(default_factory=list)  # ids of the inoculation prompts to try
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    irrelevant: list[str] = field(default_factory=list)  # ids of irrelevant-prompt controls
    # ids of PTST controls (Pure Tuning, Safe Testing): the no-prompt control's trained model
    # is also evaluated with each of these instructions at test time.
    ptst: list[str] = field(default_factory=list)
    # Prompts written in the sweep file: id -> paraphrases. Training draws one paraphrase per
    # example (a pool against context gating); evaluation in Cs uses the first.
    custom_prompts: dict[str, list[str]] = field(default_factory=dict)
    # Leak probes: contexts that resemble the inoculation prompt, in which every trial's final
    # model is also evaluated (rows of context "probe:NAME"): prompt ids (the setting's probe
    # prompts, or custom_prompts), "paraphrase", "placements", or "default" for all three kinds.
    probes: list[str] = field(default_factory=list)
    data: DataSpec = field(default_factory=DataSpec)
    model: str = "toy"  # a preset of inocray.models._presets (built once, cached) or a local model directory
    placement: str = rule("system", choices=PLACEMENTS)
    max_concurrent_trials: int = rule(2, least=1)
    max_failures: int = rule(1, least=0)  # retries of a trial (Tune) and of its workers (Train) after a failure
    scale: str = rule("raw", choices=("raw", "logit"))  # default scale of the printed fit (inocray.analysis.SCALES)
    train: TrainSpec = field(default_factory=TrainSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    engine: EngineSpec = field(default_factory=EngineSpec)
    sandbox: SandboxSpec = field(default_factory=SandboxSpec)
    # The grid (inocray/grid.py): several settings, several models, and hyperparameter axes
    # (a field's dotted name -> its values). Each cell is a single-setting sweep.
    settings: list[SettingEntry] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # instead of `model`: every model is a cell
    grid: dict[str, list[Any]] = field(default_factory=dict)
    tracking: TrackingSpec = field(default_factory=TrackingSpec)  # where trials are logged, beside the rows

    def record(self) -> dict:
        """The spec as a document that `parse_spec` reads back into it (a run's sweep.json): a
        grid's record leaves out the `model` or `setting` its `models` or `settings` replace."""
        content = dataclasses.asdict(self)
        for one, several in (("model", "models"), ("setting", "settings")):
            if content[several]:
                del content[one]
        return content

    def hash(self) -> str:
        """Short content hash of the validated spec: names the default run directory.

        Fields added after the first release are left out while they hold their defaults, so
        a run directory made before they existed keeps its hash (and can be resumed).
        """
        content = dataclasses.asdict(self)
        del content["tracking"]  # where a sweep is logged does not change what it is
        for path, default in HASH_OPTIONAL:
            *parents, name = path
            holder = content
            for parent in parents:
                holder = holder[parent]
            if holder[name] == default:
                del holder[name]
        blob = json.dumps(content, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:10]


# (field path, default) of the fields added after the first release; see SweepSpec.hash.
HASH_OPTIONAL = ((("ptst",), []), (("eval", "classifiers"), {}), (("settings",), []), (("models",), []),
                 (("grid",), {}), (("engine", "replicas"), 1), (("engine", "max_num_seqs"), 1024),
                 (("eval", "logprob_examples"), 64), (("probes",), []), (("sandbox",), {"isolation": "bwrap"}))
HASH_OPTIONAL += ((("eval", "judge"), dataclasses.asdict(ApiJudgeSpec())), (("train", "checkpoint_at"), []),
                  (("engine", "threads"), 0))




def build_spec(data: Any, source: str = "<sweep>") -> SweepSpec:
    """The SweepSpec of a parsed YAML document, each field checked against its rule; InputError
    naming the field. A grid's entries under `settings:` take the top-level value of each key
    they leave out."""
    return _build(SweepSpec, _filled(data, source), source, "")


def _filled(data: Any, source: str) -> Any:
    """The document with its one-setting or several-settings form checked, and each entry of
    `settings:` completed with the top-level keys it leaves out."""
    if not isinstance(data, dict):
        return data  # _build says what is wrong
    data = {k: v for k, v in data.items() if k not in ("models", "settings") or v != []}  # [] as if absent
    if "model" in data and "models" in data:
        raise bad(source, "models", "cannot be given beside 'model' (list every model under 'models')")
    if "settings" not in data:
        for name in ("setting", "prompts"):
            if name not in data:
                raise InputError(f"{source}: missing required field '{name}'")
        return data
    if "setting" in data:
        raise bad(source, "setting", "cannot be given beside 'settings' (name each setting in its entry)")
    entries = data["settings"]
    if not isinstance(entries, list) or not entries:
        raise bad(source, "settings", "must be a non-empty list of settings, each a mapping")
    shared = {k: data[k] for k in ENTRY_KEYS if k in data}
    filled = [shared | e if isinstance(e, dict) else e for e in entries]
    return data | {"settings": filled}


def _build(cls: type, data: Any, source: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        what = "the sweep file" if not prefix else f"field '{prefix[:-1]}'"
        raise InputError(f"{source}: {what} must be a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        raise InputError(
            f"{source}: unknown field '{prefix}{unknown[0]}' (known: {', '.join(sorted(fields))})"
        )
    values = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise InputError(f"{source}: missing required field '{prefix}{name}'")
            continue
        values[name] = convert(hints[name], data[name], source, f"{prefix}{name}")
    return cls(**values)


def convert(tp: Any, value: Any, source: str, name: str) -> Any:
    if tp is Any:  # a grid axis value: converted by grid.check_grid, which knows its field
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, source, f"{name}.")
    if typing.get_origin(tp) is dict:
        key_tp, item = typing.get_args(tp)
        if not isinstance(value, dict):
            raise InputError(f"{source}: field '{name}' must be a mapping")
        return {convert(key_tp, k, source, f"{name} key"): convert(item, v, source, f"{name}.{k}")
                for k, v in value.items()}
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise InputError(f"{source}: field '{name}' must be a list")
        return [convert(item, v, source, f"{name}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise InputError(f"{source}: field '{name}' must be true or false, not {brief.repr(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{source}: field '{name}' must be an integer, not {brief.repr(value)}")
        return value
    if tp is float:
        # PyYAML reads 1e-3 (no dot) as a string; accept any number written as text.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{source}: field '{name}' must be a number, not {brief.repr(value)}")
        if value != value or value in (float("inf"), float("-inf")):
            raise InputError(f"{source}: field '{name}' must be a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise InputError(f"{source}: field '{name}' must be a string, not {brief.repr(value)}")
        return value
    raise TypeError(f"unsupported field type {tp!r}")  # a bug in SweepSpec, not in the file


def bad(source: str, name: str, why: str) -> InputError:
    """The one-sentence error about field `name` of sweep file `source`."""
    return InputError(f"{source}: field '{name}' {why}")


def check_fields(spec: SweepSpec, source: str) -> None:
    """Each field's rule, then the constraints within and between fields."""
    check_rules(spec, source, "")
    if not ID_PATTERN.match(spec.name):
        raise bad(source, "name", "must be letters, digits, '.', '_' or '-' (at most 64)")
    if not spec.prompts:
        raise bad(source, "prompts", "must list at least one inoculation prompt")
    for pid, texts in spec.custom_prompts.items():
        if not ID_PATTERN.match(pid) or pid == NONE:
            raise bad(source, f"custom_prompts.{pid}", f"needs an id of letters, digits, '.', '_' or '-' (not '{NONE}')")
        if not texts or not all(t.strip() for t in texts):
            raise bad(source, f"custom_prompts.{pid}", "must be a non-empty list of non-empty paraphrases")
    for group in ("prompts", "irrelevant", "ptst"):
        ids = getattr(spec, group)
        if len(set(ids)) != len(ids):
            raise bad(source, group, "lists a prompt twice")
    if set(spec.prompts) & set(spec.irrelevant):
        raise bad(source, "irrelevant", "repeats a prompt already in 'prompts'")
    if set(spec.ptst) & (set(spec.prompts) | set(spec.irrelevant)):
        raise bad(source, "ptst", "repeats a prompt already in 'prompts' or 'irrelevant'")
    if not spec.seeds:
        raise bad(source, "seeds", "must list at least one seed")
    if len(set(spec.seeds)) != len(spec.seeds) or min(spec.seeds) < 0:
        raise bad(source, "seeds", "must be distinct non-negative integers")
    t = spec.train
    if any(step <= 0 for step in t.checkpoint_at):
        raise bad(source, "train.checkpoint_at", "must list positive steps")
    if t.precision == "bf16" and not t.use_gpu:
        raise bad(source, "train.precision", "bf16 needs train.use_gpu (on CPU use fp32 or auto)")
    if not t.lora.target_modules:
        raise bad(source, "train.lora.target_modules", "must name at least one module")
    if t.method == "lora" and t.lora.r > spec.engine.max_lora_rank:
        raise bad(source, "engine.max_lora_rank", f"must be at least train.lora.r ({t.lora.r})")
    if t.batch_size % (t.num_workers * t.grad_accum):
        raise bad(source, "train.batch_size", f"must be a multiple of num_workers x grad_accum "
                                              f"({t.num_workers} x {t.grad_accum})")
    if t.epochs * t.examples > MAX_STEPS * t.batch_size:
        raise bad(source, "train.epochs", f"is {brief.repr(t.epochs)}, above the limit of {MAX_STEPS} steps")
    if t.warmup_steps >= t.total_steps():
        raise bad(source, "train.warmup_steps", f"must be below the run's {t.total_steps()} steps")
    if t.total_steps() > MAX_STEPS:
        raise bad(source, "train.steps", f"is {t.total_steps()}, above the limit of {MAX_STEPS}")
    check_api_judge(spec.eval, source)


URL_PATTERN = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_api_judge(e: EvalSpec, source: str) -> None:
    """`eval.judge`: an http(s) base URL and a model, or nothing; never beside `judge_model`."""
    j = e.judge
    if not (j.endpoint or j.model or j.api_key_env):
        return
    if e.judge_model:
        raise bad(source, "eval.judge", "cannot be given beside eval.judge_model (one judge per sweep)")
    if not URL_PATTERN.match(j.endpoint):
        raise bad(source, "eval.judge.endpoint", f"must be the API's http(s) base URL (e.g. "
                                                 f"https://api.openai.com/v1), not {brief.repr(j.endpoint)}")
    if not j.model:
        raise bad(source, "eval.judge.model", "must name the model the endpoint serves (e.g. gpt-4o)")
    if j.api_key_env and not ENV_NAME.match(j.api_key_env):
        raise bad(source, "eval.judge.api_key_env", "must be the name of an environment variable (the key "
                                                    "itself never goes in the sweep file)")


def check_rules(value: Any, source: str, prefix: str) -> None:
    """The `rule` of every field of dataclass `value` and of the dataclasses inside it."""
    for f in dataclasses.fields(value):
        name, got = f"{prefix}{f.name}", getattr(value, f.name)
        if dataclasses.is_dataclass(got):
            check_rules(got, source, f"{name}.")
        elif isinstance(got, dict):
            for key, item in got.items():
                if dataclasses.is_dataclass(item):
                    check_rules(item, source, f"{name}.{key}.")
        elif isinstance(got, list):
            for i, item in enumerate(got):
                if dataclasses.is_dataclass(item):
                    check_rules(item, source, f"{name}[{i}].")
        elif f.metadata:
            why = broken_rule(f.metadata, got)
            if why:
                raise bad(source, name, why)


def broken_rule(rule: typing.Mapping, value: Any) -> str:
    """What `value` breaks of `rule` (see `rule`), in words; "" when nothing."""
    if "choices" in rule:
        allowed = rule["choices"]
        return "" if value in allowed else f"must be one of {', '.join(map(str, allowed))}, not {brief.repr(value)}"
    for key, (broken, words) in _BOUNDS.items():
        if key in rule and broken(value, rule[key]):
            if key == "most" and "says" not in rule:
                return f"is {brief.repr(value)}, above the limit of {rule['most']}"
            plain = {("above", 0): "must be positive", ("least", 0): "must not be negative"}.get((key, rule[key]))
            return f"{rule.get('says') or plain or words.format(rule[key])}, not {brief.repr(value)}"
    return ""


_BOUNDS = {  # rule key -> (broken when, the rule in words)
    "above": (operator.le, "must be above {}"),
    "least": (operator.lt, "must be at least {}"),
    "below": (operator.ge, "must be below {}"),
    "most": (operator.gt, "must be at most {}"),
}
