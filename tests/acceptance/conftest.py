"""Fixtures of the acceptance tests: the installed console script, a fresh database."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.support.database import empty_database
from tests.support.processes import Run, script
from tests.support.settings import clean_environ


@pytest.fixture(scope="module")
def pycache() -> Path:
    """A bytecode cache for the script, so its imports compile once, not on every run.

    The environment may forbid writing bytecode (``PYTHONDONTWRITEBYTECODE``); this
    cache lives in the system's temporary directory, never in the repository or the
    venv, and Python checks each entry against its source, so a stale one is harmless.
    """
    path = Path(tempfile.gettempdir()) / "stream-outbox-tests-pycache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture()
def cli(tmp_path: Path, pycache: Path) -> Run:
    """Run the console script in an empty temporary directory, with none of our variables
    but those given, and no pytest state."""

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environ = clean_environ(
            "PYTHONDONTWRITEBYTECODE",
            COLUMNS="120",
            NO_COLOR="1",
            PYTHONPYCACHEPREFIX=str(pycache),
            **env,
        )
        return subprocess.run(
            script("stream-outbox", *args),
            cwd=tmp_path,
            env=environ,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    return run


@pytest.fixture()
def fresh_url() -> Iterator[str]:
    """A new, empty database; the URL is in the ``postgres://`` form platforms hand out."""
    with empty_database("stream_outbox_cli") as url:
        yield make_url(url).set(drivername="postgres").render_as_string(hide_password=False)
