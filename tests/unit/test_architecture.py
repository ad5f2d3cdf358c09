"""The shape of the code: no import cycles, the package directions of the design, small files.

Read from the source with ``ast`` (nothing is imported): every ``import`` and
``from ... import`` of the project's packages, at the top of a module or inside a
function, is an edge of the import graph. ``from worker.x import y`` is an import of
the module ``worker.x.y`` when there is one, else of ``worker.x``; a package stands
for its ``__init__``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("worker", "app_hooks", "stream_emulator")
MAX_LINES = 400
# worker's rooms: each subpackage is one node of the package graph, each top-level module too
WORKER_ROOMS = ("stream", "sync", "pipeline", "store", "admin", "dashboard", "demo")


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


@dataclass(frozen=True)
class Import:
    """One imported module name as written (before resolving), with its line."""

    target: str
    names: tuple[str, ...]
    line: int


@cache
def modules() -> dict[str, Module]:
    """Every module of the project's packages, by dotted name, from the file tree."""
    found: dict[str, Module] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            found[".".join(parts)] = Module(".".join(parts), path, is_package)
    return found


def raw_imports(module: Module) -> Iterator[Import]:
    """Every import statement of a module, anywhere in it, with relative ones made absolute."""
    tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.name if module.is_package else module.name.rpartition(".")[0]
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield Import(base, tuple(alias.name for alias in node.names), node.lineno)


def project_targets(imported: Import) -> set[str]:
    """The project's modules an import loads by name (none for a third-party import)."""
    known = modules()
    if imported.target.split(".")[0] not in PACKAGES:
        return set()
    if not imported.names:  # import a.b.c: the deepest module that exists
        name = imported.target
        while name and name not in known:
            name = name.rpartition(".")[0]
        return {name} if name else set()
    targets = set()
    for name in imported.names:
        child = f"{imported.target}.{name}"
        targets.add(child if child in known else imported.target)
    return {target for target in targets if target in known}


@cache
def import_graph() -> dict[str, frozenset[str]]:
    """Each project module and the project modules it imports."""
    graph: dict[str, frozenset[str]] = {}
    for name, module in modules().items():
        edges: set[str] = set()
        for imported in raw_imports(module):
            edges |= project_targets(imported)
        graph[name] = frozenset(edges - {name})
    return graph


def strongly_connected(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one node (the cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for node in sorted(graph):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return found


def describe_cycles(graph: dict[str, frozenset[str]], cycles: list[list[str]]) -> str:
    """Each cycle's modules and the edges inside it, one per line."""
    lines = []
    for component in cycles:
        members = set(component)
        edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]
        lines.append(f"cycle {component}: {'; '.join(edges)}")
    return "\n".join(lines)


def room_of(module: str) -> str | None:
    """The node of ``module`` in worker's package graph (its room, or itself at the top)."""
    parts = module.split(".")
    if parts[0] != "worker":
        return None
    if len(parts) == 1:
        return "worker"
    if parts[1] in WORKER_ROOMS:
        return f"worker.{parts[1]}"
    return module


def package_graph() -> dict[str, frozenset[str]]:
    """worker's rooms and top-level modules, and which of them each imports."""
    graph: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        room = room_of(module)
        if room is None:
            continue
        edges = graph.setdefault(room, set())
        edges |= {r for t in targets if (r := room_of(t)) is not None and r != room}
    return {room: frozenset(edges) for room, edges in graph.items()}


def importers_of(top_level: str, packages: tuple[str, ...]) -> dict[str, list[str]]:
    """Modules of ``packages`` that import ``top_level`` (or below it), with the lines."""
    found: dict[str, list[str]] = {}
    for name, module in modules().items():
        if name.split(".")[0] not in packages:
            continue
        for imported in raw_imports(module):
            if imported.target.split(".")[0] == top_level:
                found.setdefault(name, []).append(f"line {imported.line}: {imported.target}")
    return found


# -- the graph reader itself ---------------------------------------------------------------


def test_the_reader_finds_every_package_and_the_imports_it_knows_of() -> None:
    # Given the project's file tree
    known = modules()
    graph = import_graph()

    # Then every package and room is a module of it, and known imports are edges
    for name in [*PACKAGES, *(f"worker.{room}" for room in WORKER_ROOMS)]:
        assert known[name].is_package, name
    assert "worker.errors" in graph["worker.stream.answers"]
    assert "worker.sync.history" in graph["worker.sync.conversations"]
    assert "app_hooks.reference" in graph["worker.app_binding"]  # an import inside a function
    assert "worker.dashboard.app" in graph["worker.dashboard"]  # a package's __init__
    assert "worker.admin.operations" in graph["worker.admin.cli"]  # from package import module
    assert "worker.settings" in graph["worker.admin.operations"]  # from worker import settings


def test_relative_imports_are_read_from_the_importing_module(tmp_path: Path) -> None:
    # Given a module of a subpackage with relative imports one and two levels up
    source = tmp_path / "history.py"
    source.write_text("from . import users\nfrom ..errors import BadSourceData\n")
    module = Module("worker.sync.history", source, is_package=False)

    # When its imports are read, Then they are absolute, and resolve to the project's modules
    found = list(raw_imports(module))
    assert [(i.target, i.names) for i in found] == [
        ("worker.sync", ("users",)),
        ("worker.errors", ("BadSourceData",)),
    ]
    assert set().union(*map(project_targets, found)) == {"worker.sync.users", "worker.errors"}


def test_tarjan_reports_a_cycle_and_nothing_else() -> None:
    # Given a graph with one cycle of three modules and a tail outside it
    graph = {
        "a": frozenset({"b"}),
        "b": frozenset({"c"}),
        "c": frozenset({"a", "d"}),
        "d": frozenset(),
    }

    # When its strongly connected components are found, Then only the cycle is reported
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert strongly_connected({**graph, "c": frozenset({"d"})}) == []


# -- no cycles -------------------------------------------------------------------------------


def test_no_module_import_cycle() -> None:
    # Given the import graph of worker, app_hooks and stream_emulator
    graph = import_graph()

    # When its strongly connected components are found
    cycles = strongly_connected(graph)

    # Then there is none: every module can be imported before the ones importing it
    assert cycles == [], describe_cycles(graph, cycles)


def test_no_cycle_between_workers_rooms() -> None:
    # Given worker's rooms (stream, sync, pipeline, store, admin, dashboard, demo) and its
    # top-level modules (settings, errors, metrics, runtime, cli, actors) as nodes
    graph = package_graph()
    assert {f"worker.{room}" for room in WORKER_ROOMS} <= set(graph)

    # When the imports between them are followed
    cycles = strongly_connected(graph)

    # Then no room depends, through others, on itself
    assert cycles == [], describe_cycles(graph, cycles)


# -- the design's directions -----------------------------------------------------------------


@pytest.mark.parametrize("forbidden", ["worker", "dramatiq", "redis", "stream_chat"])
def test_app_hooks_imports_no_worker_queue_redis_or_stream(forbidden: str) -> None:
    # Given app_hooks, which runs inside the application's own transactions
    # When its imports are read, Then none reaches the worker, the queue, Redis or Stream
    assert importers_of(forbidden, ("app_hooks",)) == {}


@pytest.mark.parametrize("forbidden", ["worker", "app_hooks"])
def test_the_emulator_imports_neither_worker_nor_app_hooks(forbidden: str) -> None:
    # Given the Stream emulator, a stand-in for the outside system
    # When its imports are read, Then it knows nothing of the code it stands against
    assert importers_of(forbidden, ("stream_emulator",)) == {}


def test_only_worker_stream_imports_the_stream_sdk() -> None:
    # Given every module of worker (app_hooks is held to no Stream at all above; the
    # emulator's client() hands tests the real SDK pointed at it)
    # When the importers of stream_chat are listed
    importers = importers_of("stream_chat", ("worker",))

    # Then they are all in worker/stream/, and at least one is (the gateway)
    outside = {name: lines for name, lines in importers.items() if room_of(name) != "worker.stream"}
    assert outside == {}
    assert "worker.stream.gateway" in importers


# -- small files -----------------------------------------------------------------------------


def test_no_module_passes_400_lines() -> None:
    # Given every module of worker, app_hooks and stream_emulator
    # When their lines are counted
    lengths = {
        name: len(module.path.read_text(encoding="utf-8").splitlines())
        for name, module in modules().items()
    }

    # Then none is longer than the limit
    assert len(lengths) > 50
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}
