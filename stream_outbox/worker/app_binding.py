"""The application's binding, for every process: loaded from ``OUTBOX_BINDING`` and checked.

``OUTBOX_BINDING=myapp.chat_binding:binding`` names a :class:`~stream_outbox.Binding`, or a
function of no arguments returning one, the way ``dramatiq myapp.tasks:broker`` names
a broker. Without it the reference application's binding is used. Each process
resolves it once at start-up and checks that ``DATABASE_URL`` holds the tables and
columns it reads, so a wrong binding is refused in one line, never found out by a
reconcile reading the wrong table. The module is looked for in the working directory
first, so an app that is not installed is found from its own folder.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from typing import Any

from sqlalchemy import Engine, inspect

from stream_outbox.app_hooks.binding import ROLES, Binding, BindingError
from stream_outbox.app_hooks.default_binding import binding_or_reference
from stream_outbox.worker.errors import ConfigurationError

__all__ = ["check_tables", "load_binding", "resolve_binding"]

VARIABLE = "OUTBOX_BINDING"
_loaded: dict[str | None, Binding] = {}
_loading = threading.Lock()


def load_binding(path: str | None) -> Binding:
    """The binding ``path`` names (``module:attribute``); the reference one for ``None``.

    Loaded once per process and path. A path that cannot be imported, or names no
    binding, raises :class:`ConfigurationError` naming ``OUTBOX_BINDING`` and why.
    """
    with _loading:
        if path not in _loaded:
            _loaded[path] = _load(path)
        return _loaded[path]


def _working_directory_on_path() -> None:
    """Put the working directory first on the import path, as dramatiq, celery and uvicorn
    do, so that an app run from its own folder, not installed as a package, is found."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)


def _load(path: str | None) -> Binding:
    if path is None:
        return binding_or_reference(None)
    module_name, sep, attribute = path.strip().partition(":")
    if not sep or not module_name or not attribute.isidentifier():
        raise ConfigurationError(f"{VARIABLE} {path!r} is not module:attribute")
    _working_directory_on_path()
    try:
        module = importlib.import_module(module_name)
    except BindingError as exc:
        raise ConfigurationError(f"{VARIABLE} {path}: {exc}") from None
    except Exception as exc:  # an import error, or the app's module failing as it loads
        raise ConfigurationError(
            f"{VARIABLE} {path}: cannot import {module_name}: {type(exc).__name__}: {exc}"
        ) from None
    if not hasattr(module, attribute):
        raise ConfigurationError(f"{VARIABLE} {path}: {module_name} has no {attribute!r}")
    found: Any = getattr(module, attribute)
    if callable(found) and not isinstance(found, Binding):
        try:
            found = found()
        except BindingError as exc:
            raise ConfigurationError(f"{VARIABLE} {path}: {exc}") from None
    if not isinstance(found, Binding):
        raise ConfigurationError(
            f"{VARIABLE} {path} is a {type(found).__name__}, not a stream_outbox.Binding "
            "(or a function returning one)"
        )
    return found


def check_tables(engine: Engine, binding: Binding, *, path: str | None) -> None:
    """Refuse a binding whose tables or columns ``DATABASE_URL`` lacks, in one line."""
    with engine.connect() as conn:
        found = inspect(conn)
        for model, role, used in _tables_used(binding):
            table = model.__table__
            if not found.has_table(table.name, schema=table.schema):
                raise ConfigurationError(_missing_table(model, role, table.name, path))
            columns = {column["name"] for column in found.get_columns(table.name, table.schema)}
            for attribute, column in used:
                if column not in columns:
                    raise ConfigurationError(
                        f"column {table.name}.{column} (read as {model.__name__}.{attribute} "
                        f"for the {role}) is missing from DATABASE_URL"
                    )


def _missing_table(model: type[Any], role: str, table: str, path: str | None) -> str:
    if path is None:
        return (
            f"the reference app's tables are missing from DATABASE_URL (no table {table}): "
            f"set {VARIABLE} to your app's binding (module:attribute)"
        )
    return f"table {table} ({model.__name__}, the {role}) is missing from DATABASE_URL"


def _tables_used(binding: Binding) -> list[tuple[type[Any], str, list[tuple[str, str]]]]:
    """Each bound model with its role and the (attribute, column) pairs the binding reads."""
    tables: dict[type[Any], tuple[str, set[tuple[str, str]]]] = {}
    for role, fields in ROLES.items():
        model = binding.model_for(role)
        if binding.model_of(role) is None:
            fields = ("full_name", "avatar_url")  # no profile: read from the user row
        attributes = [binding.attribute_name(role, name) for name in fields]
        attributes.append(binding.soft_delete.get(role))
        used = tables.setdefault(model, (role, set()))[1]
        for attribute in attributes:
            if attribute is not None and hasattr(model, attribute):
                used.update(_columns(model, attribute))
    last_read = binding.last_read_column()
    if last_read is not None:
        tables[binding.participant][1].update(_columns(binding.participant, last_read.key))
    for model, key in binding.user_sources.items():
        tables.setdefault(model, ("user's source", set()))[1].update(_columns(model, key))
    return [(model, role, sorted(used)) for model, (role, used) in tables.items()]


def _columns(model: type[Any], attribute: str) -> list[tuple[str, str]]:
    """The model's table columns behind a mapped attribute (none for a computed one)."""
    prop = inspect(model).attrs.get(attribute)
    table = model.__table__
    return [
        (attribute, column.name)
        for column in getattr(prop, "columns", [])
        if getattr(column, "table", None) is table
    ]


def resolve_binding(engine: Engine, path: str | None) -> Binding:
    """Load the binding ``path`` names and check it against the database (start-up)."""
    binding = load_binding(path)
    check_tables(engine, binding, path=path)
    return binding
