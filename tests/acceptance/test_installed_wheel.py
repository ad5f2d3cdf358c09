"""The wheel as a user installs it: one top-level name, run from an app's own folder.

The app folder is not installed and holds names of its own that ours once shadowed: a
``worker.py`` (the usual place of an RQ, arq or Celery worker), ``migrations/env.py``
(its Alembic history) and its ``myapp`` package. Every command runs there with
``OUTBOX_BINDING`` alone, no ``PYTHONPATH``; inside the binding, ``import worker`` is the
app's module.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stream_outbox.emulator import Emulator
from tests.apps import accounts
from tests.support.processes import started_processes, stop, wait_for
from tests.support.redis import REDIS_PREFIX, clear_redis
from tests.support.settings import ROOT, clean_environ, product_env

pytestmark = pytest.mark.slow

# The locked versions of the runtime dependencies, as a requirements file.
EXPORT = ["--frozen", "--no-dev", "--no-hashes", "--no-emit-project", "--no-header"]

APP_WORKER = '''"""The app's own background worker."""

OWNER = "the app"
'''
APP_MIGRATIONS_ENV = 'raise RuntimeError("the app\'s own Alembic environment was run")\n'
BINDING = """
import worker  # the app's worker.py, not stream-outbox's

from myapp.models import make

assert worker.OWNER == "the app", worker.__file__
binding = make()
"""
SEED = """
import sys

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from stream_outbox import install
from myapp.chat_binding import binding
from myapp.models import Account, Member, Thread

url, step = sys.argv[1], sys.argv[2]
factory = sessionmaker(create_engine(url.replace("postgres://", "postgresql+psycopg://", 1)))
install(factory, binding)
with factory() as session, session.begin():
    if step == "start":
        for n in (1, 2, 3):
            session.add(Account(id=n, email_address=f"a{n}@example.com", name=f"A{n}"))
        session.add(Thread(id=1, created_at="2026-01-01"))
        session.flush()
        session.add_all([Member(thread_id=1, account_id=1), Member(thread_id=1, account_id=2)])
    else:
        session.add(Member(thread_id=1, account_id=3))
"""


@dataclass
class Installed:
    wheel: Path
    bin: Path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The project's wheel, built and installed (with the locked dependencies) in a new venv."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not on PATH (./dev installs it)")
    out = tmp_path_factory.mktemp("wheel")
    quiet = {"check": True, "capture_output": True, "text": True, "timeout": 300}
    subprocess.run([uv, "build", "--wheel", "--out-dir", str(out), str(ROOT)], **quiet)
    [wheel] = out.glob("*.whl")
    requirements = out / "requirements.txt"
    subprocess.run(
        [
            uv,
            "export",
            "--frozen",
            "--no-dev",
            "--no-hashes",
            "--no-emit-project",
            "--no-header",
            "--output-file",
            str(requirements),
        ],
        cwd=ROOT,
        **quiet,
    )
    venv = out / "venv"
    subprocess.run([uv, "venv", "--python", sys.executable, str(venv)], **quiet)
    python = venv / "bin" / "python"
    subprocess.run(
        [uv, "pip", "install", "--python", str(python), "-r", str(requirements), str(wheel)],
        **quiet,
    )
    return Installed(wheel, venv / "bin")


@pytest.fixture()
def app_dir(tmp_path: Path) -> Path:
    """An app's folder, not installed: worker.py, migrations/env.py, myapp/."""
    (tmp_path / "worker.py").write_text(APP_WORKER)
    (tmp_path / "migrations" / "versions").mkdir(parents=True)
    (tmp_path / "migrations" / "env.py").write_text(APP_MIGRATIONS_ENV)
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "models.py").write_text(
        Path(accounts.__file__).read_text(encoding="utf-8")
    )
    (tmp_path / "myapp" / "chat_binding.py").write_text(textwrap.dedent(BINDING))
    (tmp_path / "seed.py").write_text(textwrap.dedent(SEED))
    return tmp_path


@pytest.fixture()
def app_env(fresh_url: str, redis_url: str, emu: Emulator) -> Iterator[dict[str, str]]:
    """Settings as an app's deployment gives them: variables only, no PYTHONPATH."""
    clear_redis(redis_url, REDIS_PREFIX)
    yield clean_environ(
        "VIRTUAL_ENV",
        "PYTHONPATH",
        **product_env(
            fresh_url,
            redis_url,
            emu.base_url,
            prefix=REDIS_PREFIX,
            OUTBOX_BINDING="myapp.chat_binding:binding",
            OUTBOX_WORKER_THREADS="2",
            OUTBOX_PRIORITY_THREADS="0",
            PYTHONUNBUFFERED="1",
        ),
    )
    clear_redis(redis_url, REDIS_PREFIX)


@pytest.fixture()
def start(app_dir: Path, app_env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start a long-running command in the app's folder; stopped at the end."""
    with started_processes(app_env, cwd=app_dir) as launch:
        yield launch


def members(emu: Emulator) -> list[list[str]]:
    return [channel["members"] for channel in emu.state()["channels"].values()]


def test_the_wheel_installs_one_top_level_name(installed: Installed) -> None:
    # Given the built wheel, When its files are listed, Then only stream_outbox is at the top
    with zipfile.ZipFile(installed.wheel) as wheel:
        tops = {name.split("/")[0] for name in wheel.namelist()}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"stream_outbox"}


def test_every_command_runs_from_an_app_folder_that_holds_worker_and_migrations(
    installed: Installed,
    app_dir: Path,
    app_env: dict[str, str],
    emu: Emulator,
    start: Callable[..., subprocess.Popen[str]],
) -> None:
    script = str(installed.bin / "stream-outbox")

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=app_dir, env=app_env, capture_output=True, text=True, timeout=120
        )

    # Given the outbox migrated (our migrations, not the app's env.py) and the app's tables
    migrated = run(script, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    accounts.create_tables(app_env["DATABASE_URL"])
    # And a conversation written by the app, its capture installed from `stream_outbox`
    seeded = run(str(installed.bin / "python"), "seed.py", app_env["DATABASE_URL"], "start")
    assert seeded.returncode == 0, seeded.stderr

    # When the relay and the worker run there, Then the channel reaches Stream
    relay = start(script, "relay")
    worker = start(script, "worker")
    wait_for(lambda: members(emu) == [["1", "2"]], "the channel with members 1 and 2")
    # And admin verify finds Stream in step with the database
    verified = run(script, "admin", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    stop(worker)

    # When Dramatiq's own command line runs the actors, Then it reconciles the next change
    dramatiq = start(str(installed.bin / "dramatiq"), "stream_outbox.worker.actors", "-p", "1")
    seeded = run(str(installed.bin / "python"), "seed.py", app_env["DATABASE_URL"], "more")
    assert seeded.returncode == 0, seeded.stderr
    wait_for(lambda: members(emu) == [["1", "2", "3"]], "the third member through dramatiq")
    for process in (dramatiq, relay):
        output = stop(process)
        assert "Traceback" not in output, output
