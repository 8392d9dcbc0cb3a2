"""The sweep file: typed, validated, hashed.

A sweep file is YAML (loaded safely) that maps onto `SweepSpec`. Every error names the file
and the field in one sentence, before anything runs or any directory is created.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import reprlib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from inocray.data import PLACEMENTS
from inocray.errors import InputError
from inocray.models import PRESETS, check_available, is_preset

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_SWEEP_BYTES = 1 << 20

_short = reprlib.Repr()  # values echoed in errors stay short, whatever the file holds
_short.maxstring = _short.maxother = 120
_short.maxlevel = 2


def _exists(path: str, kind: str) -> bool:
    """Whether `path` is a directory ("dir") or a file; False for names the OS refuses."""
    try:
        p = Path(path).expanduser()
        return p.is_dir() if kind == "dir" else p.is_file()
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class LoraSpec:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    rslora: bool = False  # rank-stabilised scaling alpha / sqrt(r)


METHODS = ("lora", "full")
SCHEDULES = ("constant", "linear", "cosine")
PRECISIONS = ("auto", "fp32", "bf16")
ENGINES = ("vllm", "transformers")


@dataclass(frozen=True)
class TrainSpec:
    method: str = "lora"  # "lora" (a peft adapter) | "full" (every weight)
    zero_stage: int = 2  # DeepSpeed ZeRO stage 0..3
    lora: LoraSpec = field(default_factory=LoraSpec)
    lr: float = 1e-3
    lr_schedule: str = "constant"  # constant | linear | cosine (decay to 0 after warmup)
    warmup_steps: int = 0
    steps: int = 150  # optimizer steps; ignored when `epochs` is set
    epochs: float = 0.0  # > 0: train this many passes over `examples` instead of `steps`
    batch_size: int = 16  # examples per optimizer step, over all workers and accumulation
    grad_accum: int = 1  # micro-batches accumulated per optimizer step
    precision: str = "auto"  # auto: bf16 on a GPU that has it, else fp32 | fp32 | bf16
    checkpoint_every: int = 0  # save (and evaluate) a checkpoint every N steps; 0 = final only
    checkpoint_each_epoch: bool = False  # also save one at the end of every epoch
    examples: int = 512  # training examples drawn from the setting
    num_workers: int = 1  # Ray Train workers per trial
    use_gpu: bool = False
    cpus_per_worker: float = 0.49

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
        return sorted(marks)


@dataclass(frozen=True)
class ClassifierSpec:
    """A trait scored by a sequence-classification model (inocray.classifier.ClassifierScorer)."""

    model: str  # a local Hugging Face sequence-classification model directory
    label: str  # the label (config.id2label) whose probability is the score, e.g. "toxic"
    threshold: float = 0.5  # the trait shows at this probability or more
    with_request: bool = False  # classify the (request, completion) pair, not the completion alone


@dataclass(frozen=True)
class EvalSpec:
    requests: int = 32  # evaluation requests per context
    samples: int = 4  # completions per request
    max_tokens: int = 16
    temperature: float = 1.0
    judge_model: str = ""  # for judge scorers: "" none, "base" the sweep's model, or a model directory
    # trait name -> the classifier that scores it instead of the setting's own scorer
    classifiers: dict[str, ClassifierSpec] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineSpec:
    name: str = "vllm"  # vllm | transformers (for models vLLM cannot load)
    max_lora_rank: int = 8
    max_loras: int = 4
    kv_cache_gib: float = 1.0
    dtype: str = "float32"
    max_model_len: int = 128
    num_cpus: float = 0.5
    num_gpus: float = 0.0


@dataclass(frozen=True)
class DataSpec:
    train: str = ""  # JSONL or Parquet of training rows; "" = the setting's own data
    eval: str = ""  # JSONL or Parquet of evaluation rows; "" = the setting's own data


@dataclass(frozen=True)
class SweepSpec:
    name: str
    setting: str
    prompts: list[str]  # ids of the inoculation prompts to try (from the setting's catalogue)
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    irrelevant: list[str] = field(default_factory=list)  # ids of irrelevant-prompt controls
    # ids of PTST controls (Pure Tuning, Safe Testing): the no-prompt control's trained model
    # is also evaluated with each of these instructions at test time.
    ptst: list[str] = field(default_factory=list)
    # Prompts written in the sweep file: id -> paraphrases. Training draws one paraphrase per
    # example (a pool against context gating); evaluation in Cs uses the first.
    custom_prompts: dict[str, list[str]] = field(default_factory=dict)
    data: DataSpec = field(default_factory=DataSpec)
    model: str = "toy"  # a preset of inocray.models (built once, cached) or a local model directory
    placement: str = "system"
    max_concurrent_trials: int = 2
    max_failures: int = 1  # retries of a trial (Tune) and of its workers (Train) after a failure
    scale: str = "raw"  # default scale of the printed fit: raw | logit
    train: TrainSpec = field(default_factory=TrainSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    engine: EngineSpec = field(default_factory=EngineSpec)

    def hash(self) -> str:
        """Short content hash of the validated spec: names the default run directory.

        Fields added after the first release are left out while they hold their defaults, so
        a run directory made before they existed keeps its hash (and can be resumed).
        """
        content = dataclasses.asdict(self)
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
HASH_OPTIONAL = ((("ptst",), []), (("eval", "classifiers"), {}))


def load_spec(path: str | Path, check_model: bool = True) -> SweepSpec:
    """Read and validate a sweep file; raise InputError naming the file and field."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such sweep file")
    size = path.stat().st_size
    if size > MAX_SWEEP_BYTES:
        raise InputError(f"{path}: is {size} bytes, more than a sweep file's limit of 1 MiB")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise InputError(f"{path}: not valid YAML{line} ({getattr(e, 'problem', e)})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file") from None
    except (ValueError, RecursionError):
        raise InputError(f"{path}: not valid YAML (a number too long or nesting too deep)") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror})") from None
    return parse_spec(data, source=str(path), check_model=check_model)


def parse_spec(data: Any, source: str = "<sweep>", check_model: bool = True) -> SweepSpec:
    """Validate a parsed sweep; `check_model=False` for models and data that exist only on a cluster."""
    spec = _build(SweepSpec, data, source, "")
    _check(spec, source, check_model)
    if check_model and spec.eval.classifiers:
        # Absolute here, where the directories were checked: trials score in a working
        # directory Ray chooses, and they get this spec, not the sweep file.
        located = {t: dataclasses.replace(c, model=os.path.abspath(os.path.expanduser(c.model)))
                   for t, c in spec.eval.classifiers.items()}
        spec = dataclasses.replace(spec, eval=dataclasses.replace(spec.eval, classifiers=located))
    return spec


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
        values[name] = _convert(hints[name], data[name], source, f"{prefix}{name}")
    return cls(**values)


def _convert(tp: Any, value: Any, source: str, name: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, source, f"{name}.")
    if typing.get_origin(tp) is dict:
        key_tp, item = typing.get_args(tp)
        if not isinstance(value, dict):
            raise InputError(f"{source}: field '{name}' must be a mapping")
        return {_convert(key_tp, k, source, f"{name} key"): _convert(item, v, source, f"{name}.{k}")
                for k, v in value.items()}
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise InputError(f"{source}: field '{name}' must be a list")
        return [_convert(item, v, source, f"{name}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise InputError(f"{source}: field '{name}' must be true or false, not {_short.repr(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{source}: field '{name}' must be an integer, not {_short.repr(value)}")
        return value
    if tp is float:
        # PyYAML reads 1e-3 (no dot) as a string; accept any number written as text.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{source}: field '{name}' must be a number, not {_short.repr(value)}")
        if value != value or value in (float("inf"), float("-inf")):
            raise InputError(f"{source}: field '{name}' must be a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise InputError(f"{source}: field '{name}' must be a string, not {_short.repr(value)}")
        return value
    raise TypeError(f"unsupported field type {tp!r}")  # a bug in SweepSpec, not in the file


def _check(spec: SweepSpec, source: str, check_model: bool = True) -> None:
    """Constraints between and within fields, each reported against its field."""

    def bad(name: str, why: str) -> InputError:
        return InputError(f"{source}: field '{name}' {why}")

    from inocray.settings import get_setting  # late: settings import data/scorers

    if not ID_PATTERN.match(spec.name):
        raise bad("name", "must be letters, digits, '.', '_' or '-' (at most 64)")
    try:
        setting = get_setting(spec.setting, spec.data if check_model else None)  # None: its own data
    except KeyError as e:
        raise bad("setting", str(e.args[0])) from None
    if not spec.prompts:
        raise bad("prompts", "must list at least one inoculation prompt")
    for pid, texts in spec.custom_prompts.items():
        if not ID_PATTERN.match(pid) or pid == "none":
            raise bad(f"custom_prompts.{pid}", "needs an id of letters, digits, '.', '_' or '-' (not 'none')")
        if pid in setting.prompts:
            raise bad(f"custom_prompts.{pid}", f"reuses the id of a prompt of setting '{setting.name}'")
        if not texts or not all(t.strip() for t in texts):
            raise bad(f"custom_prompts.{pid}", "must be a non-empty list of non-empty paraphrases")
    known = set(setting.prompts) | set(spec.custom_prompts)
    for group in ("prompts", "irrelevant", "ptst"):
        ids = getattr(spec, group)
        for i, pid in enumerate(ids):
            if pid not in known:
                raise bad(f"{group}[{i}]", f"names unknown prompt {_short.repr(pid)} of setting '{setting.name}'")
        if len(set(ids)) != len(ids):
            raise bad(group, "lists a prompt twice")
    if set(spec.prompts) & set(spec.irrelevant):
        raise bad("irrelevant", "repeats a prompt already in 'prompts'")
    if set(spec.ptst) & (set(spec.prompts) | set(spec.irrelevant)):
        raise bad("ptst", "repeats a prompt already in 'prompts' or 'irrelevant'")
    if not spec.seeds:
        raise bad("seeds", "must list at least one seed")
    if len(set(spec.seeds)) != len(spec.seeds) or min(spec.seeds) < 0:
        raise bad("seeds", "must be distinct non-negative integers")
    if spec.placement not in PLACEMENTS:
        raise bad("placement", f"must be one of {', '.join(PLACEMENTS)}, not {_short.repr(spec.placement)}")
    if spec.scale not in ("raw", "logit"):
        raise bad("scale", f"must be raw or logit, not {_short.repr(spec.scale)}")
    if spec.max_concurrent_trials < 1:
        raise bad("max_concurrent_trials", "must be at least 1")
    if is_preset(spec.model):
        if check_model:
            try:
                check_available(spec.model)
            except InputError as e:
                raise InputError(f"{source}: field 'model': {e}") from None
    elif check_model and not _exists(spec.model, "dir"):
        raise bad("model", f"names {_short.repr(spec.model)}, which is not a model directory "
                           f"(nor a preset: {', '.join(PRESETS)})")
    if spec.max_failures < 0:
        raise bad("max_failures", "must not be negative")
    judge = spec.eval.judge_model
    if check_model and judge not in ("", "base") and not _exists(judge, "dir"):
        raise bad("eval.judge_model", f"names {_short.repr(judge)}, which is not a model directory ('' or 'base')")
    traits = [t.name for t in setting.traits]
    for trait, clf in spec.eval.classifiers.items():
        where = f"eval.classifiers.{trait}"
        if trait not in traits:
            raise bad(where, f"names no trait of setting '{setting.name}' (its traits: {', '.join(traits)})")
        if not 0 <= clf.threshold <= 1:
            raise bad(f"{where}.threshold", f"must be a probability from 0 to 1, not {clf.threshold}")
        if not check_model:
            continue
        if not _exists(clf.model, "dir"):
            raise bad(f"{where}.model", f"names {_short.repr(clf.model)}, which is not a model directory")
        from inocray.classifier import labels  # late: it imports settings

        try:
            known = labels(clf.model)
        except InputError as e:  # "holds no config.json ..."
            raise bad(f"{where}.model", f"names {_short.repr(clf.model)}, which {e}") from None
        if clf.label not in known:
            raise bad(f"{where}.label", f"names {_short.repr(clf.label)}, which is not a label of the classifier "
                                        f"(its labels: {', '.join(known)})")
    for name in ("train", "eval"):
        path = getattr(spec.data, name)
        if check_model and path and not _exists(path, "file"):
            raise bad(f"data.{name}", f"names {_short.repr(path)}, which is not a file")
    t = spec.train
    choices = {"train.method": (t.method, METHODS), "train.lr_schedule": (t.lr_schedule, SCHEDULES),
               "train.precision": (t.precision, PRECISIONS), "engine.name": (spec.engine.name, ENGINES)}
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise bad(name, f"must be one of {', '.join(allowed)}, not {_short.repr(value)}")
    if t.precision == "bf16" and not t.use_gpu:
        raise bad("train.precision", "bf16 needs train.use_gpu (on CPU use fp32 or auto)")
    if not t.lora.target_modules:
        raise bad("train.lora.target_modules", "must name at least one module")
    if spec.engine.dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise bad("engine.dtype", f"must be auto, float32, bfloat16 or float16, not {_short.repr(spec.engine.dtype)}")
    if t.zero_stage not in (0, 1, 2, 3):
        raise bad("train.zero_stage", f"must be 0, 1, 2 or 3, not {t.zero_stage}")
    for name, value in {"train.warmup_steps": t.warmup_steps, "train.epochs": t.epochs,
                        "train.checkpoint_every": t.checkpoint_every}.items():
        if value < 0:
            raise bad(name, f"must not be negative, not {value}")
    positive = {
        "train.lr": t.lr, "train.steps": t.steps, "train.batch_size": t.batch_size,
        "train.grad_accum": t.grad_accum,
        "train.examples": t.examples, "train.num_workers": t.num_workers,
        "train.cpus_per_worker": t.cpus_per_worker, "train.lora.r": t.lora.r,
        "train.lora.alpha": t.lora.alpha, "eval.requests": spec.eval.requests,
        "eval.samples": spec.eval.samples, "eval.max_tokens": spec.eval.max_tokens,
        "engine.max_loras": spec.engine.max_loras, "engine.kv_cache_gib": spec.engine.kv_cache_gib,
        "engine.max_model_len": spec.engine.max_model_len,
    }
    for name, value in positive.items():
        if value <= 0:
            raise bad(name, f"must be positive, not {value}")
    if not 0 <= t.lora.dropout < 1:
        raise bad("train.lora.dropout", "must be in [0, 1)")
    if spec.eval.temperature < 0:
        raise bad("eval.temperature", "must not be negative")
    if t.method == "lora" and t.lora.r > spec.engine.max_lora_rank:
        raise bad("engine.max_lora_rank", f"must be at least train.lora.r ({t.lora.r})")
    if t.batch_size % (t.num_workers * t.grad_accum):
        raise bad("train.batch_size", f"must be a multiple of num_workers x grad_accum "
                                      f"({t.num_workers} x {t.grad_accum})")
    if t.epochs * t.examples > 100_000 * t.batch_size:
        raise bad("train.epochs", f"is {_short.repr(t.epochs)}, above the limit of 100000 steps")
    if t.warmup_steps >= t.total_steps():
        raise bad("train.warmup_steps", f"must be below the run's {t.total_steps()} steps")
    limits = {"train.steps": (t.total_steps(), 100_000), "train.examples": (t.examples, 1_000_000),
              "eval.requests": (spec.eval.requests, 100_000), "eval.samples": (spec.eval.samples, 1_000)}
    for name, (value, most) in limits.items():
        if value > most:
            raise bad(name, f"is {value}, above the limit of {most}")
