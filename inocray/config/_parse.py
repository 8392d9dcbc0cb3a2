"""Reading a sweep file: YAML loaded safely, its fields typed and checked, its grid checked.

    load_spec(path)              the file, read and parsed
    parse_spec(data, source)     a document already read (a run's sweep.json)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from inocray.config._grid import check_grid
from inocray.config._spec import MAX_SWEEP_BYTES, SweepSpec, bad, broken_rule, build_spec
from inocray.errors import InputError
from inocray.registry import BACKENDS


def load_spec(path: str | Path) -> SweepSpec:
    """Read a sweep file and check its fields; InputError naming the file and field.

    The setting, data files and models it names are checked by _validate.load_sweep.
    """
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
    return parse_spec(data, source=str(path))


def parse_spec(data: Any, source: str = "<sweep>") -> SweepSpec:
    """The SweepSpec of a parsed YAML document, its fields checked; InputError naming the field.

    A grid's entries under `settings:` take the top-level value of each key they leave out,
    and every cell of the grid is checked as the single-setting sweep it is (grid.check_grid).
    """
    spec = check_grid(build_spec(data, source), source)
    if spec.engine.name not in BACKENDS:
        raise bad(source, "engine.name", broken_rule({"choices": BACKENDS.names()}, spec.engine.name))
    return spec
