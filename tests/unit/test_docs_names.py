"""The names the README and the docs give exist under the package as it is now: every
``stream_outbox...`` dotted name, every import of their Python examples, and every
path of the repository they cite. A module renamed without its docs fails here."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(
    [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "stream_outbox").rglob("*.md")]
)
# Modules whose import has effects (the one dramatiq loads reads the environment and
# builds a broker): found by their file, never imported.
NOT_IMPORTED = {"stream_outbox.worker.actors"}
# Dotted names that are not Python: PostgreSQL settings of the capture triggers and a
# column of the outbox table (``stream_outbox.priority``).
NOT_PYTHON = {
    "stream_outbox.capture",
    "stream_outbox.written",
    "stream_outbox.priority",
    "stream_outbox.origin",
}  # PostgreSQL settings
# Paths cited that are not the repository's: Stream's own docs, a git-ignored output.
NOT_OURS = {"docs/migrating/import.md", "benchmarks/results/latest.json"}
DOTTED = re.compile(r"(?<![\w./-])stream_outbox(?:\.\w+)+")
PATH = re.compile(r"(?<![\w./-])((?:stream_outbox|tests|benchmarks|docs|examples)/[\w./-]*\w)")


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


@cache
def _resolves(dotted: str) -> bool:
    """Whether ``dotted`` is a module of the package, or an attribute reached from one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            spec = None
        if spec is None:
            continue
        if cut == len(parts):
            return True
        if module in NOT_IMPORTED:
            return False
        found: object = importlib.import_module(module)
        for name in parts[cut:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


def _python_imports(text: str) -> list[str]:
    """``module.name`` for each name the Python examples of a page import from the package."""
    names = []
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        tree = ast.parse(_dedent(block))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stream_outbox"):
                names += [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names += [a.name for a in node.names if a.name.startswith("stream_outbox")]
    return names


def _dedent(block: str) -> str:
    lines = block.splitlines()
    indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    return "\n".join(line[indent:] for line in lines)


@pytest.mark.parametrize("page", DOCS, ids=_relative)
def test_every_dotted_name_of_a_page_exists(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    names = {name.rstrip(".") for name in DOTTED.findall(text)} | set(_python_imports(text))
    assert sorted(name for name in names - NOT_PYTHON if not _resolves(name)) == []


@pytest.mark.parametrize("page", DOCS, ids=_relative)
def test_every_repository_path_of_a_page_exists(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    cited = {match.rstrip(".") for match in PATH.findall(text)} - NOT_OURS
    missing = sorted(path for path in cited if not (ROOT / path).exists() and "*" not in path)
    assert missing == []


def test_the_checks_see_a_stale_name() -> None:
    # Given names that moved away, When they are looked up, Then they do not resolve
    assert not _resolves("stream_outbox.worker.pipeline.actor")
    assert not _resolves("stream_outbox.app_hooks.Bindings")
    assert _resolves("stream_outbox.worker.actors")
    assert _resolves("stream_outbox.app_hooks.binding.ROLES")
    assert _python_imports("```python\nfrom stream_outbox import Binding, nope\n```") == [
        "stream_outbox.Binding",
        "stream_outbox.nope",
    ]
