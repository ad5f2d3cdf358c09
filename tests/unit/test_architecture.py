"""The shape of the code: no import cycles, and the package directions of the design.

Read from the source with ``ast`` (nothing is imported): every ``import`` and
``from ... import`` of the project's packages, at the top of a module or inside a
function, is an edge of the import graph. ``from stream_outbox.worker.x import y`` is an
import of the module ``stream_outbox.worker.x.y`` when there is one, else of
``stream_outbox.worker.x``; a package stands for its ``__init__``. Modules may be long
when they hold one concern; functions are kept short by ruff's complexity limit.
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
ROOT_PACKAGE = "stream_outbox"
WORKER = f"{ROOT_PACKAGE}.worker"
APP_HOOKS = f"{ROOT_PACKAGE}.app_hooks"
EMULATOR = f"{ROOT_PACKAGE}.emulator"


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
    for path in sorted((ROOT / ROOT_PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = Module(".".join(parts), path, is_package)
    return found


def rooms(package: str) -> set[str]:
    """The subpackages of ``package`` (its rooms), by dotted name."""
    prefix = f"{package}."
    return {
        name
        for name, module in modules().items()
        if module.is_package and name.startswith(prefix) and "." not in name.removeprefix(prefix)
    }


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
    if imported.target.split(".")[0] != ROOT_PACKAGE:
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


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(f"{package}.")


def room_of(module: str, package: str = WORKER) -> str | None:
    """The node of ``module`` in ``package``'s graph (its room, or itself at the top)."""
    if not _within(module, package):
        return None
    room = ".".join(module.split(".")[: package.count(".") + 2])
    return room if room in rooms(package) else module


def package_graph(package: str) -> dict[str, frozenset[str]]:
    """``package``'s rooms and top-level modules, and which of them each imports."""
    graph: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        room = room_of(module, package)
        if room is None:
            continue
        edges = graph.setdefault(room, set())
        edges |= {r for t in targets if (r := room_of(t, package)) is not None and r != room}
    return {room: frozenset(edges) for room, edges in graph.items()}


def importers_of(imported_name: str, package: str) -> dict[str, list[str]]:
    """Modules of ``package`` that import ``imported_name`` (or below it), with the lines."""
    found: dict[str, list[str]] = {}
    for name, module in modules().items():
        if not _within(name, package):
            continue
        for imported in raw_imports(module):
            if _within(imported.target, imported_name):
                found.setdefault(name, []).append(f"line {imported.line}: {imported.target}")
    return found


# -- the graph reader itself ---------------------------------------------------------------


def test_the_reader_finds_every_package_and_the_imports_it_knows_of() -> None:
    # Given the project's file tree
    known = modules()
    graph = import_graph()

    # Then every package and room is a module of it, and known imports are edges
    for name in [ROOT_PACKAGE, WORKER, APP_HOOKS, EMULATOR, f"{WORKER}.stream"]:
        assert known[name].is_package, name
    assert f"{WORKER}.sync" in rooms(WORKER)
    assert f"{EMULATOR}.importing" in rooms(EMULATOR)
    assert "stream_outbox.worker.errors" in graph["stream_outbox.worker.stream.answers"]
    assert "stream_outbox.worker.sync.history" in graph["stream_outbox.worker.sync.conversations"]
    assert (
        "stream_outbox.app_hooks.reference" in graph["stream_outbox.app_hooks.default_binding"]
    )  # an import inside a function
    assert (
        "stream_outbox.worker.dashboard.app" in graph["stream_outbox.worker.dashboard"]
    )  # a package's __init__
    assert APP_HOOKS in graph[ROOT_PACKAGE]  # the public surface of the root


def test_relative_imports_are_read_from_the_importing_module(tmp_path: Path) -> None:
    # Given a module of a subpackage with relative imports one and two levels up
    source = tmp_path / "history.py"
    source.write_text("from . import users\nfrom ..errors import BadSourceData\n")
    module = Module("stream_outbox.worker.sync.history", source, is_package=False)

    # When its imports are read, Then they are absolute, and resolve to the project's modules
    found = list(raw_imports(module))
    assert [(i.target, i.names) for i in found] == [
        ("stream_outbox.worker.sync", ("users",)),
        ("stream_outbox.worker.errors", ("BadSourceData",)),
    ]
    assert set().union(*map(project_targets, found)) == {
        "stream_outbox.worker.sync.users",
        "stream_outbox.worker.errors",
    }


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
    # Given the import graph of every module under stream_outbox
    graph = import_graph()

    # When its strongly connected components are found
    cycles = strongly_connected(graph)

    # Then there is none: every module can be imported before the ones importing it
    assert cycles == [], describe_cycles(graph, cycles)


@pytest.mark.parametrize("package", [WORKER, EMULATOR])
def test_no_cycle_between_rooms(package: str) -> None:
    # Given a package's rooms (its subpackages) and its top-level modules as nodes
    graph = package_graph(package)
    assert rooms(package) <= set(graph)

    # When the imports between them are followed
    cycles = strongly_connected(graph)

    # Then no room depends, through others, on itself
    assert cycles == [], describe_cycles(graph, cycles)


# -- the design's directions -----------------------------------------------------------------


@pytest.mark.parametrize(
    "forbidden",
    [WORKER, EMULATOR, f"{ROOT_PACKAGE}.migrations", "dramatiq", "redis", "stream_chat"],
)
def test_app_hooks_imports_no_worker_queue_redis_or_stream(forbidden: str) -> None:
    # Given app_hooks, which runs inside the application's own transactions
    # When its imports are read, Then none reaches the worker, the queue, Redis or Stream
    assert importers_of(forbidden, APP_HOOKS) == {}


def test_the_root_package_exposes_app_hooks_alone() -> None:
    # Given the root package, which every app imports (``from stream_outbox import install``)
    # When its imports are read, Then it loads app_hooks and nothing heavier
    assert {t for t in import_graph()[ROOT_PACKAGE] if not _within(t, APP_HOOKS)} == set()


@pytest.mark.parametrize("forbidden", [WORKER, APP_HOOKS, f"{ROOT_PACKAGE}.migrations"])
def test_the_emulator_imports_nothing_of_the_product(forbidden: str) -> None:
    # Given the Stream emulator, a stand-in for the outside system
    # When its imports are read, Then it knows nothing of the code it stands against
    assert importers_of(forbidden, EMULATOR) == {}


def test_only_worker_stream_imports_the_stream_sdk() -> None:
    # Given every module of worker (app_hooks is held to no Stream at all above; the
    # emulator's client() hands tests the real SDK pointed at it)
    # When the importers of stream_chat are listed
    importers = importers_of("stream_chat", WORKER)

    # Then they are all in the worker's stream room, and at least one is (the gateway)
    outside = {
        name: lines for name, lines in importers.items() if room_of(name) != f"{WORKER}.stream"
    }
    assert outside == {}
    assert f"{WORKER}.stream.gateway" in importers
