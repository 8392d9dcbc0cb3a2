"""The package's shape: no import cycles, public surfaces, no private import in the docs."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
           for p in (ROOT / "inocray").rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """The inocray modules `path` imports when it is imported (not in functions, not for typing)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and (child.module or "").startswith("inocray"):
                found.update(f"{child.module}.{a.name}" if f"{child.module}.{a.name}" in MODULES else child.module
                             for a in child.names)
            elif isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("inocray"))
            visit(child)

    visit(ast.parse(path.read_text()))
    return found & set(MODULES)


def test_no_module_imports_itself_back():
    graph = {name: _imports(path) - {name} for name, path in MODULES.items()}
    done: set[str] = set()

    def walk(name: str, stack: list[str]) -> None:
        for dep in graph[name]:
            assert dep not in stack, "import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep])
            if dep not in done:
                walk(dep, stack + [dep])
        done.add(name)

    for name in graph:
        walk(name, [name])


def test_the_spec_reads_no_setting_and_workers_load_no_click():
    code = ("import sys, inocray.errors, inocray.config._spec; "
            "print(sorted(m for m in ('click', 'inocray.settings', 'inocray.settings._classifier') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("package", ["inocray.analysis", "inocray.evaluation.backends", "inocray.cli", "inocray.settings",
                                     "inocray.models.toy"])
def test_each_subpackage_names_its_public_surface(package):
    module = __import__(package, fromlist=["__all__"])
    assert module.__all__ and all(hasattr(module, name) for name in module.__all__)


def test_no_doc_imports_a_private_module():
    docs = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    private = re.compile(r"(?:from|import)\s+inocray(?:\.\w+)*\._\w+")
    found = [f"{doc.relative_to(ROOT)}: {m.group(0)}" for doc in docs for m in private.finditer(doc.read_text())]
    assert not found
