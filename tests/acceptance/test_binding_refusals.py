"""A binding that does not fit is refused at start-up, in one line, by every command.

Each test writes the app's binding module into the command's working directory, as an
application would, and runs the installed console script there (no ``PYTHONPATH``).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.apps import accounts
from tests.support.processes import Run

pytestmark = pytest.mark.slow

# Every command that reads the app's tables, as a user starts it.
COMMANDS = [
    ("relay",),
    ("worker",),
    ("backfill",),
    ("admin", "verify"),
    ("admin", "resync"),
    ("dashboard",),
]


@pytest.fixture()
def app_dir(tmp_path: Path) -> Path:
    """The command's working directory, holding the app's ``myapp.py``."""
    (tmp_path / "myapp.py").write_text(Path(accounts.__file__).read_text(encoding="utf-8"))
    return tmp_path


def binding_module(app_dir: Path, body: str) -> None:
    (app_dir / "chat_binding.py").write_text(textwrap.dedent(body))


def run(cli: Run, app_dir: Path, url: str, *args: str, binding: str | None) -> list[str]:
    """Run a command from the app's folder; assert exit status 2; its stderr lines."""
    env = {
        "DATABASE_URL": url,
        "GETSTREAM_API_KEY": "key",
        "GETSTREAM_API_SECRET": "secret-that-is-at-least-32-bytes-long",
        "OUTBOX_DASHBOARD_TOKEN": "a-dashboard-token",
    }
    if binding is not None:
        env["OUTBOX_BINDING"] = binding
    result = cli(*args, **env)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    return result.stderr.splitlines()


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_binding_that_cannot_be_imported_is_refused_by_every_command(
    cli: Run, app_dir: Path, fresh_url: str, command: tuple[str, ...]
) -> None:
    # Given OUTBOX_BINDING naming a module that does not exist
    # When the command starts, Then it stops with one line naming the variable and why
    assert run(cli, app_dir, fresh_url, *command, binding="myapp_typo:binding") == [
        "error: OUTBOX_BINDING myapp_typo:binding: cannot import myapp_typo: "
        "ModuleNotFoundError: No module named 'myapp_typo'"
    ]


@pytest.mark.parametrize(
    ("body", "path", "line"),
    [
        ("binding = 42\n", "chat_binding:binding", "is a int, not a stream_outbox.Binding"),
        (
            "def binding():\n    return 'x'\n",
            "chat_binding:binding",
            "is a str, not a stream_outbox",
        ),
        ("", "chat_binding:binding", "chat_binding has no 'binding'"),
        ("", "chat_binding", "'chat_binding' is not module:attribute"),
        ("raise RuntimeError('settings missing')\n", "chat_binding:binding", "RuntimeError"),
    ],
    ids=["not a binding", "a function returning no binding", "no attribute", "no colon", "fails"],
)
def test_a_path_that_names_no_binding_is_refused(
    cli: Run, app_dir: Path, fresh_url: str, body: str, path: str, line: str
) -> None:
    # Given a binding module that does not give a Binding at the path
    binding_module(app_dir, body)
    # When the worker starts, Then it stops with one line naming OUTBOX_BINDING
    [error] = run(cli, app_dir, fresh_url, "worker", binding=path)
    assert error.startswith("error: OUTBOX_BINDING ")
    assert line in error


def test_a_model_lacking_an_attribute_the_binding_needs_is_named(
    cli: Run, app_dir: Path, fresh_url: str
) -> None:
    # Given a binding that leaves the account's email under the reference's name
    binding_module(
        app_dir,
        """
        from myapp import make
        binding = make(user={"full_name": "name", "avatar_url": None})
        """,
    )
    # When the relay starts, Then one line names the model, the attribute and the way out
    assert run(cli, app_dir, fresh_url, "relay", binding="chat_binding:binding") == [
        "error: OUTBOX_BINDING chat_binding:binding: Account has no attribute 'email' "
        "(the user's email); name the right one in Binding(fields=...)"
    ]


def test_a_table_missing_from_the_database_is_named(
    cli: Run, app_dir: Path, fresh_url: str
) -> None:
    # Given a right binding, and a database without the app's tables
    binding_module(app_dir, "from myapp import make\nbinding = make()\n")
    cli("migrate", DATABASE_URL=fresh_url)
    # When admin verify starts, Then one line names the table and the model
    assert run(cli, app_dir, fresh_url, "admin", "verify", binding="chat_binding:make") == [
        "error: table accounts (Account, the user) is missing from DATABASE_URL"
    ]


def test_a_column_missing_from_the_database_is_named(
    cli: Run, app_dir: Path, fresh_url: str
) -> None:
    # Given the app's tables, one of them without the column a field is read from
    binding_module(app_dir, "from myapp import make\nbinding = make()\n")
    accounts.create_tables(fresh_url, without="posts.body")
    # When the worker starts, Then one line names the table, the column and the attribute
    assert run(cli, app_dir, fresh_url, "worker", binding="chat_binding:binding") == [
        "error: column posts.body (read as Post.body for the message) is missing from DATABASE_URL"
    ]


def test_the_reference_binding_on_another_database_points_at_the_variable(
    cli: Run, app_dir: Path, fresh_url: str
) -> None:
    # Given no OUTBOX_BINDING, and a database holding another app's tables
    accounts.create_tables(fresh_url)
    # When backfill starts, Then one line says so and points at OUTBOX_BINDING
    [error] = run(cli, app_dir, fresh_url, "backfill", binding=None)
    assert error.startswith("error: the reference app's tables are missing from DATABASE_URL")
    assert error.endswith("set OUTBOX_BINDING to your app's binding (module:attribute)")


def test_the_binding_flag_wins_over_the_variable(cli: Run, app_dir: Path, fresh_url: str) -> None:
    # Given a right binding in OUTBOX_BINDING, and a wrong one given as --binding
    binding_module(app_dir, "from myapp import make\nbinding = make()\n")
    accounts.create_tables(fresh_url)
    # When a command runs with both, Then the flag's binding is the one loaded
    result = cli(
        "--binding",
        "chat_binding:nothing",
        "admin",
        "verify",
        DATABASE_URL=fresh_url,
        OUTBOX_BINDING="chat_binding:binding",
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "error: OUTBOX_BINDING chat_binding:nothing: chat_binding has no 'nothing'"
    ]


def test_a_database_without_the_outbox_tables_says_to_migrate(
    cli: Run, app_dir: Path, fresh_url: str
) -> None:
    # Given a right binding and the app's tables, but no outbox tables yet
    binding_module(app_dir, "from myapp import make\nbinding = make()\n")
    accounts.create_tables(fresh_url)
    # When admin verify runs, Then one line names the missing table and the command to run
    [error] = run(cli, app_dir, fresh_url, "admin", "verify", binding="chat_binding:binding")
    assert error.startswith('error: DATABASE_URL: relation "stream_outbox')
    assert error.endswith("does not exist: run stream-outbox migrate")
