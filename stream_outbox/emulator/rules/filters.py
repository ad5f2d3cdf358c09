"""A small evaluator for Stream's MongoDB-style filter and sort conditions.

Supported: plain equality, ``$eq``, ``$ne``, ``$in``, ``$nin``, ``$gt``, ``$gte``,
``$lt``, ``$lte``, ``$exists``, ``$and``, ``$or``, ``$nor``. A list-valued field
(a channel's ``members``) matches ``$in`` / a scalar ``$eq`` when any element
matches, and ``$eq`` with a list when the sets are equal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from stream_outbox.emulator.rules.errors import input_error

MISSING: Any = object()
Getter = Callable[[str], Any]


def matches(conditions: Mapping[str, Any] | None, get: Getter) -> bool:
    """Return whether the object exposed by ``get`` satisfies ``conditions``."""
    if not conditions:
        return True
    if not isinstance(conditions, Mapping):
        raise input_error("filter_conditions must be an object")
    return all(_match_key(key, value, get) for key, value in conditions.items())


def named_values(conditions: Any, key: str) -> list[str] | None:
    """The values a filter's condition on ``key`` names (plain, ``$eq`` or ``$in``): only
    objects with one of them can match (an index's lookup); None when it names none so."""
    condition = conditions.get(key) if isinstance(conditions, Mapping) else None
    if isinstance(condition, str):
        return [condition]
    if isinstance(condition, Mapping) and len(condition) == 1:
        ((op, arg),) = condition.items()
        if op == "$eq" and isinstance(arg, str):
            return [arg]
        if op == "$in" and isinstance(arg, list):
            return [str(value) for value in arg]
    return None


def _match_key(key: str, value: Any, get: Getter) -> bool:
    if key == "$and":
        return all(matches(sub, get) for sub in _sub_filters(key, value))
    if key == "$or":
        return any(matches(sub, get) for sub in _sub_filters(key, value))
    if key == "$nor":
        return not any(matches(sub, get) for sub in _sub_filters(key, value))
    if key.startswith("$"):
        raise input_error(f"operator {key} is not supported at the top level")
    actual = get(key)
    if isinstance(value, Mapping) and any(str(k).startswith("$") for k in value):
        return all(_apply(op, arg, actual) for op, arg in value.items())
    return _apply("$eq", value, actual)


def _sub_filters(key: str, value: Any) -> Sequence[Mapping[str, Any]]:
    if not isinstance(value, list):
        raise input_error(f"{key} expects a list of conditions")
    return value


def _apply(op: str, arg: Any, actual: Any) -> bool:
    if op == "$exists":
        return (actual is not MISSING and actual is not None) == bool(arg)
    if actual is MISSING:
        return op in ("$ne", "$nin")
    handler = _OPERATORS.get(op)
    if handler is None:
        raise input_error(f"operator {op} is not supported by the emulator")
    return handler(arg, actual)


def _eq(arg: Any, actual: Any) -> bool:
    if isinstance(actual, list):
        if isinstance(arg, list):
            return set(map(_hashable, actual)) == set(map(_hashable, arg))
        return arg in actual
    return bool(actual == arg)


def _in(arg: Any, actual: Any) -> bool:
    if not isinstance(arg, list):
        raise input_error("$in expects a list")
    if isinstance(actual, list):
        return any(item in arg for item in actual)
    return actual in arg


def _compare(predicate: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def check(arg: Any, actual: Any) -> bool:
        try:
            return predicate(actual, arg)
        except TypeError:
            return False

    return check


def _hashable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) else repr(value)


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": _eq,
    "$ne": lambda arg, actual: not _eq(arg, actual),
    "$in": _in,
    "$nin": lambda arg, actual: not _in(arg, actual),
    "$gt": _compare(lambda a, b: bool(a > b)),
    "$gte": _compare(lambda a, b: bool(a >= b)),
    "$lt": _compare(lambda a, b: bool(a < b)),
    "$lte": _compare(lambda a, b: bool(a <= b)),
}


def normalize_sort(sort: Any) -> list[tuple[str, int]]:
    """Turn the SDK's ``[{"field": f, "direction": d}]`` (or ``{f: d}``) into pairs."""
    if not sort:
        return []
    items = [sort] if isinstance(sort, Mapping) else sort
    if not isinstance(items, list):
        raise input_error("sort must be a list")
    pairs: list[tuple[str, int]] = []
    for item in items:
        if not isinstance(item, Mapping):
            raise input_error("sort entries must be objects")
        if "field" in item:
            pairs.append((str(item["field"]), -1 if int(item.get("direction", 1)) < 0 else 1))
        else:
            pairs.extend((str(k), -1 if int(v) < 0 else 1) for k, v in item.items())
    return pairs


def sort_items(
    items: list[Any], sort: list[tuple[str, int]], getter: Callable[[Any, str], Any]
) -> list[Any]:
    """Stable multi-key sort; missing values sort first in ascending order."""
    result = list(items)
    for field, direction in reversed(sort):
        result.sort(key=partial(_item_key, getter, field), reverse=direction < 0)
    return result


def _item_key(getter: Callable[[Any, str], Any], field: str, item: Any) -> tuple[int, Any]:
    return _sort_key(getter(item, field))


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is MISSING or value is None:
        return (0, "")
    if isinstance(value, bool | int | float):
        return (1, value)
    return (2, str(value))
