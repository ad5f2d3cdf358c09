"""The binding page's example (docs/binding.md) is the second test app's binding, which
the acceptance tests run as separate processes: the documentation shows what is proven."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from stream_outbox.app_hooks import Binding
from stream_outbox.app_hooks.binding import ROLES
from tests.apps.other_app import models
from tests.apps.other_app.chat_binding import binding as proven

BINDING_DOC = Path(__file__).resolve().parents[2] / "docs" / "binding.md"


def documented_binding(monkeypatch: pytest.MonkeyPatch) -> Binding:
    """Run the binding page's example with ``myapp.models`` standing for the test app's models."""
    blocks = re.findall(r"```python\n(.*?)```", BINDING_DOC.read_text(), re.S)
    [example] = [block for block in blocks if "binding = Binding(" in block]
    package = types.ModuleType("myapp")
    monkeypatch.setitem(sys.modules, "myapp", package)
    monkeypatch.setitem(sys.modules, "myapp.models", models)
    namespace: dict[str, Any] = {}
    exec(compile(example, str(BINDING_DOC), "exec"), namespace)
    found = namespace["binding"]
    assert isinstance(found, Binding)
    return found


def test_the_documented_example_is_the_binding_the_acceptance_tests_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shown = documented_binding(monkeypatch)
    # Same models by role, attribute names, soft deletes and other sources
    assert {role: shown.model_of(role) for role in ROLES} == {
        role: proven.model_of(role) for role in ROLES
    }
    assert shown.fields == proven.fields
    assert shown.soft_delete == proven.soft_delete
    assert shown.user_sources == proven.user_sources
    # and the same changes captured, the computed name and image included
    assert shown.rules == proven.rules
    assert str(shown.user_name(shown)) == str(proven.user_name(proven))  # type: ignore[misc]
    assert str(shown.user_image(shown)) == str(proven.user_image(proven))  # type: ignore[misc]
