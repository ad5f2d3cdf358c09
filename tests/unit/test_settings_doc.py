"""The settings reference (docs/settings.md) names every environment variable of the
settings, and no other."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices

from stream_outbox.worker.settings import Settings

SETTINGS_DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
HEADER = re.compile(r"^\|\s*Variable\s*\|\s*Default\s*\|\s*Meaning\s*\|\s*$")
ROW_NAME = re.compile(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|")


def settings_variables() -> set[str]:
    """Each field's variable: its alias, or the first choice of its ``AliasChoices``."""
    names = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            alias = alias.choices[0]
        assert isinstance(alias, str), f"Settings.{field_name} has no variable name"
        names.add(alias)
    return names


def documented_variables() -> list[str]:
    """The first cells of the rows of the ``| Variable | Default | Meaning |`` table."""
    lines = SETTINGS_DOC.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if HEADER.match(line)]
    assert len(starts) == 1, "docs/settings.md needs one '| Variable | Default | Meaning |' table"
    names = []
    for line in lines[starts[0] + 2 :]:
        if not line.startswith("|"):
            break
        match = ROW_NAME.match(line)
        assert match, f"settings row without a `VARIABLE` in its first cell: {line}"
        names.append(match.group(1))
    return names


def test_readme_table_lists_each_variable_once() -> None:
    names = documented_variables()
    repeated = sorted({name for name in names if names.count(name) > 1})
    assert not repeated, f"docs/settings.md settings table lists these more than once: {repeated}"


def test_readme_table_matches_the_settings() -> None:
    documented = set(documented_variables())
    variables = settings_variables()
    missing = sorted(variables - documented)
    extra = sorted(documented - variables)
    assert not missing and not extra, (
        f"docs/settings.md settings table and stream_outbox.worker.settings.Settings differ: "
        f"missing rows for {missing or 'none'}; rows for unknown variables {extra or 'none'}"
    )
