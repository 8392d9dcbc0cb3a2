"""Candidate prompts for `inocray screen`: read, checked, one sentence per mistake.

Three formats, chosen by the file's suffix:

    *.yaml, *.yml   a list of {id, text} mappings
    *.jsonl         one {"id": ..., "text": ...} object per line
    anything else   plain text, one prompt per line; blank lines and `#` comments are
                    skipped; ids are generated from the order (c001, c002, ...)

Every error names the file and the line, and is raised before anything runs.
"""

from __future__ import annotations

import json
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from inocray.errors import InputError
from inocray.config import ID_PATTERN


@dataclass(frozen=True)
class Candidate:
    """A candidate inoculation prompt: its id, its text and the line it came from."""

    id: str
    text: str
    line: int


def read_candidates(path: str | Path) -> list[Candidate]:
    """The candidates in `path`, in file order; InputError naming file and line if malformed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such candidate file")
    lines = _text_lines(path)
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        found = _from_yaml(path, "\n".join(lines))
    elif suffix == ".jsonl":
        found = _from_jsonl(path, lines)
    else:
        found = _from_text(lines)
    if not found:
        raise InputError(f"{path}: holds no candidate prompts")
    return _checked(path, found)


def _text_lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(f"{path}: line {line} is not UTF-8 text") from None
    lines = text.removeprefix("\ufeff").split("\n")
    for i, line in enumerate(lines, 1):
        line = line.removesuffix("\r")
        if any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in line):
            raise InputError(f"{path}: line {i} holds control characters; is it a text file?")
        lines[i - 1] = line
    return lines


def _from_text(lines: list[str]) -> list[tuple[Any, Any, int]]:
    prompts = [(line.strip(), i) for i, line in enumerate(lines, 1)]
    prompts = [(text, i) for text, i in prompts if text and not text.startswith("#")]
    width = max(3, len(str(len(prompts))))
    return [(f"c{k:0{width}d}", text, i) for k, (text, i) in enumerate(prompts, 1)]


def _from_jsonl(path: Path, lines: list[str]) -> list[tuple[Any, Any, int]]:
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except (ValueError, RecursionError) as e:
            raise InputError(f"{path}: line {i} is not valid JSON ({_why(e)})") from None
        out.append(_fields(path, i, item))
    return out


def _from_yaml(path: Path, text: str) -> list[tuple[Any, Any, int]]:
    try:
        data, root = yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(f"{path}: not valid YAML{where} ({getattr(e, 'problem', e)})") from None
    except (ValueError, RecursionError) as e:
        raise InputError(f"{path}: not valid YAML ({_why(e)})") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise InputError(f"{path}: line 1 must start a list of {{id, text}} mappings")
    return [_fields(path, node.start_mark.line + 1, item) for node, item in zip(root.value, data)]


def _why(e: Exception) -> str:
    """What a parser's ValueError or RecursionError says about the text, in a few words."""
    if isinstance(e, json.JSONDecodeError):
        return e.msg
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return "a number has too many digits" if "digits" in str(e) else str(e)


def _fields(path: Path, line: int, item: Any) -> tuple[Any, Any, int]:
    if not isinstance(item, dict) or set(item) != {"id", "text"}:
        raise InputError(f"{path}: line {line} must be a mapping with exactly the keys id and text")
    return item["id"], item["text"], line


def _checked(path: Path, found: list[tuple[Any, Any, int]]) -> list[Candidate]:
    ids: dict[str, int] = {}
    texts: dict[str, int] = {}
    out = []
    for pid, text, line in found:
        where = f"{path}: line {line}"
        if not isinstance(pid, str) or not ID_PATTERN.match(pid):
            raise InputError(f"{where} has id {reprlib.repr(pid)}; an id is letters, digits, '.', '_' or '-' "
                             "(at most 64)")
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{where} has no prompt text (text must be a non-empty string)")
        if pid in ids:
            raise InputError(f"{where} repeats the id {pid!r} of line {ids[pid]}")
        if text.strip() in texts:
            raise InputError(f"{where} repeats the prompt of line {texts[text.strip()]}")
        ids[pid], texts[text.strip()] = line, line
        out.append(Candidate(pid, text.strip(), line))
    return out
