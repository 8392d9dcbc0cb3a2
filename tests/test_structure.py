"""The package's shape: stage folders whose imports run one way, no import loop (imports made
inside functions counted), public faces, no private import across folders or in the docs."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The folders of inocray/, lowest first: a module may import its own folder and the folders
# below it, never one above or beside it (docs/architecture.md, "The layout"). The shared
# leaves at the root (errors, registry, chat, and the shipped request pool) are below everything.
LAYERS = [
    {"errors", "registry", "chat", "requests"},  # requests/: the request pool the package ships
    {"models"},
    {"settings"},
    {"config"},
    {"results"},
    {"training", "evaluation", "analysis"},
    {"run"},
    {"cli"},
]
RANK = {folder: rank for rank, folders in enumerate(LAYERS) for folder in folders}
# Imports of inocray modules made inside functions, and why each is deferred. The commands
# import their stage when they run, so that `inocray --help` stays fast; the others load a
# heavy third-party package on import.
DEFERRED = {
    "inocray/cli/": "each command imports its stage when it runs (`inocray --help` stays fast)",
    "inocray/models/toy/base_model.py": "the toy tokenizer imports transformers",
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported inocray module, dotted
    line: int
    deferred: bool  # made inside a function
    typing_only: bool  # under `if TYPE_CHECKING:`


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of the package under `root`."""
    return {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
            for p in (root / "inocray").rglob("*.py")}


def imports(root: Path) -> list[Import]:
    """Every import of an inocray module, wherever it is made (module level, functions, classes)."""
    known = modules(root)
    found = []
    for name, path in known.items():

        def visit(node: ast.AST, deferred: bool, typing_only: bool) -> None:
            for child in ast.iter_child_nodes(node):
                inner = deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
                typing = typing_only or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
                if isinstance(child, ast.ImportFrom) and (child.module or "").startswith("inocray"):
                    for alias in child.names:
                        target = f"{child.module}.{alias.name}"
                        target = target if target in known else child.module
                        found.append(Import(name, target, child.lineno, inner, typing))
                elif isinstance(child, ast.Import):
                    found.extend(Import(name, a.name, child.lineno, inner, typing)
                                 for a in child.names if a.name.startswith("inocray"))
                visit(child, inner, typing)

        visit(ast.parse(path.read_text()), False, False)
    return [i for i in found if i.target in known and i.target != i.source]


def folder(module: str) -> str:
    """The top folder of a module (`inocray.config._plan` -> config; `inocray.chat` -> chat)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def loops(found: list[Import]) -> list[list[str]]:
    """Every import loop among the modules (typing-only imports aside), one path each."""
    graph: dict[str, set[str]] = {}
    for i in found:
        if not i.typing_only:
            graph.setdefault(i.source, set()).add(i.target)
    out, done = [], set()

    def walk(name: str, stack: list[str]) -> None:
        for dep in sorted(graph.get(name, ())):
            if dep in stack:
                out.append(stack[stack.index(dep):] + [dep])
            elif dep not in done:
                walk(dep, stack + [dep])
        done.add(name)

    for name in sorted(graph):
        walk(name, [name])
    return out


def test_no_import_loop_counting_imports_inside_functions():
    assert loops(imports(ROOT)) == []


def test_a_planted_loop_through_a_function_is_found(tmp_path):
    package = tmp_path / "inocray"
    (package / "config").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "config" / "__init__.py").write_text("")
    (package / "config" / "_spec.py").write_text("def grid():\n    from inocray.config import _grid\n")
    (package / "config" / "_grid.py").write_text("from inocray.config._spec import grid\n")
    assert loops(imports(tmp_path)) == [["inocray.config._grid", "inocray.config._spec", "inocray.config._grid"]]


def test_imports_between_folders_run_down_the_layers():
    assert set(RANK) == {folder(m) for m in modules(ROOT) if m != "inocray"}, "a folder missing from LAYERS"
    upward = [f"{i.source}:{i.line} imports {i.target}" for i in imports(ROOT)
              if folder(i.source) != folder(i.target) and RANK[folder(i.target)] >= RANK[folder(i.source)]]
    assert upward == []


def test_a_folder_is_entered_through_its_face():
    """Across folders only a folder's package (its __init__) or its public modules are imported."""
    private = [f"{i.source}:{i.line} imports {i.target}" for i in imports(ROOT)
               if folder(i.source) != folder(i.target) and any(p.startswith("_") for p in i.target.split(".")[2:])]
    assert private == []


def test_imports_inside_functions_are_deferred_for_a_reason():
    deferred = [f"{i.source}:{i.line} imports {i.target}" for i in imports(ROOT) if i.deferred
                and not any(str(modules(ROOT)[i.source].relative_to(ROOT)).startswith(p) for p in DEFERRED)]
    assert deferred == []


def test_the_spec_is_a_leaf():
    """The sweep file's types and rules import nothing of inocray but the error contract."""
    assert {i.target for i in imports(ROOT) if i.source == "inocray.config._spec"} == {"inocray.errors"}


def test_training_workers_load_no_click():
    code = "import sys, inocray.training; print('click' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("package", ["inocray.analysis", "inocray.cli", "inocray.config", "inocray.evaluation",
                                     "inocray.evaluation.backends", "inocray.models", "inocray.models.toy",
                                     "inocray.results", "inocray.run", "inocray.settings", "inocray.training"])
def test_each_subpackage_names_its_public_surface(package):
    module = __import__(package, fromlist=["__all__"])
    assert module.__all__ and all(hasattr(module, name) for name in module.__all__)


def test_no_doc_imports_a_private_module():
    docs = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    private = re.compile(r"(?:from|import)\s+inocray(?:\.\w+)*\._\w+")
    found = [f"{doc.relative_to(ROOT)}: {m.group(0)}" for doc in docs for m in private.finditer(doc.read_text())]
    assert not found
