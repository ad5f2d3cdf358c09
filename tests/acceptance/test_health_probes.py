"""Health for orchestrators: ``stream-outbox health`` and the ``/healthz`` and ``/readyz``
of a running worker and relay, with the database, Redis and Stream stopped in turn.

Each dependency is one of the test's own (a scratch database, a throwaway
``redis-server``, an emulator), so stopping it touches nobody else's.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stream_outbox.emulator import Emulator
from tests.support.database import ScratchDatabase
from tests.support.processes import Run, free_port, script, started_processes, wait_for
from tests.support.redis import PrivateRedis, redis_server
from tests.support.settings import API_KEY, API_SECRET, clean_environ, product_env

pytestmark = pytest.mark.slow

PASSWORD = "not-a-real-password-4821"
_WAIT_SECONDS = 60.0


@dataclass
class Services:
    """The dependencies of one test: each can be stopped on its own."""

    database: ScratchDatabase
    redis: PrivateRedis
    emulator: Emulator
    env: dict[str, str]

    def stop_redis(self) -> None:
        self.redis.kill()

    def drop_database(self) -> None:
        self.database.drop_now()


@pytest.fixture()
def services(tmp_path: Path) -> Iterator[Services]:
    redis_server()
    database = ScratchDatabase("stream_outbox_health")
    database.create()
    with (tmp_path / "redis.log").open("w") as log:
        redis = PrivateRedis(log)
        redis.start()
        try:
            with Emulator(api_key=API_KEY, api_secret=API_SECRET) as emu:
                env = product_env(database.url, redis.url, emu.base_url)
                yield Services(database, redis, emu, env)
        finally:
            redis.kill()
            database.drop()


# -- the command -------------------------------------------------------------------------


def test_health_ready_exits_0_when_database_redis_and_stream_answer(
    cli: Run, services: Services
) -> None:
    # Given the three dependencies up, When the readiness command runs
    done = cli("health", "--ready", **services.env)

    # Then it exits 0 with one line naming each check
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ready: database ok, redis ok, stream ok"

    # And --json gives each check's result
    body = json.loads(cli("health", "--ready", "--json", **services.env).stdout)
    assert body["status"] == "ready"
    assert {name: c["ok"] for name, c in body["checks"].items()} == {
        "database": True,
        "redis": True,
        "stream": True,
    }


def test_health_ready_never_prints_the_database_password(cli: Run, services: Services) -> None:
    # Given a DATABASE_URL with a password, at a port where nothing listens
    url = f"postgresql://someone:{PASSWORD}@127.0.0.1:{free_port()}/nothing"

    # When the readiness command runs, as text and as JSON
    for flags in (["--ready"], ["--ready", "--json"]):
        done = cli("health", *flags, **{**services.env, "DATABASE_URL": url})

        # Then it exits 1, naming the database, and the password is nowhere
        assert done.returncode == 1
        assert "database" in done.stdout
        assert PASSWORD not in done.stdout + done.stderr


STOPS: dict[str, Callable[[Services], None]] = {
    "database": Services.drop_database,
    "redis": Services.stop_redis,
    "stream": lambda services: services.emulator.stop(),
}


@pytest.mark.parametrize("dependency", list(STOPS))
def test_health_ready_exits_1_naming_the_dependency_stopped(
    cli: Run, services: Services, dependency: str
) -> None:
    # Given one dependency stopped (the database dropped, Redis or the emulator killed)
    STOPS[dependency](services)

    # When the readiness command runs
    done = cli("health", "--ready", **services.env)

    # Then it exits 1 with one line naming that dependency alone, and no secret
    assert done.returncode == 1
    assert done.stdout.count("\n") == 1
    assert done.stdout.startswith(f"not ready: {dependency}: ")
    assert API_SECRET not in done.stdout + done.stderr
    body = json.loads(cli("health", "--ready", "--json", **services.env).stdout)
    assert [name for name, c in body["checks"].items() if not c["ok"]] == [dependency]


def test_health_exits_2_on_bad_configuration(cli: Run, services: Services) -> None:
    # Given no Stream credentials, When the readiness command runs: exit 2, one line
    env = {k: v for k, v in services.env.items() if k != "GETSTREAM_API_KEY"}
    done = cli("health", "--ready", **env)
    assert (done.returncode, done.stderr.strip()) == (2, "error: GETSTREAM_API_KEY is not set")

    # Given no metrics port, When the liveness command runs: exit 2, one line
    done = cli("health", **services.env)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: OUTBOX_METRICS_PORT is not set: pass --port"


def test_health_exits_1_when_no_process_serves_the_metrics_port(
    cli: Run, services: Services
) -> None:
    # Given nothing on the port, When the liveness command runs, Then exit 1, one line
    port = free_port()
    done = cli("health", "--port", str(port), **services.env)
    assert done.returncode == 1
    assert done.stdout.startswith(f"not alive: process: nothing answers at http://127.0.0.1:{port}")


# -- the endpoints of running processes ----------------------------------------------------


def get(port: int, path: str) -> tuple[int, bytes]:
    """The status and body of a GET on the metrics port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def answers(port: int, path: str, status: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return get(port, path)[0] == status
        except OSError:
            return False

    return check


@pytest.fixture()
def start(
    services: Services, pycache: Path
) -> Iterator[Callable[..., tuple[int, subprocess.Popen[str]]]]:
    """Start a ``stream-outbox`` command with a metrics port of its own; its port once
    ``/healthz`` answers."""
    with started_processes(clean_environ()) as launch:

        def run(*args: str, **env: str) -> tuple[int, subprocess.Popen[str]]:
            port = free_port()
            own = {
                "OUTBOX_METRICS_PORT": str(port),
                "OUTBOX_REDIS_PREFIX": f"health_{port}",
                "PYTHONPYCACHEPREFIX": str(pycache),
                "PYTHONUNBUFFERED": "1",
            }
            process = launch(*script("stream-outbox", *args), **{**services.env, **own, **env})
            wait_for(
                answers(port, "/healthz", 200), "/healthz", timeout=_WAIT_SECONDS, process=process
            )
            return port, process

        yield run


def checks(port: int, path: str) -> dict[str, bool]:
    """Each check's verdict in the JSON body of a health path."""
    body = json.loads(get(port, path)[1])
    return {name: c["ok"] for name, c in body["checks"].items()}


def test_a_worker_serves_metrics_liveness_and_readiness_as_each_dependency_stops(
    services: Services, start: Callable[..., tuple[int, subprocess.Popen[str]]], cli: Run
) -> None:
    # Given a running worker with its metrics port
    port, process = start("worker", "--threads", "1", "--priority-threads", "0")

    # Then /healthz says its Dramatiq threads are alive, /readyz that all three answer,
    # and /metrics is Prometheus's text as before
    assert checks(port, "/healthz") == {"worker": True}
    assert get(port, "/readyz")[0] == 200
    assert checks(port, "/readyz") == {"database": True, "redis": True, "stream": True}
    status, metrics = get(port, "/metrics")
    assert status == 200
    assert b"# TYPE stream_outbox_stream_calls_total counter" in metrics

    # And the liveness command reads the same, exit 0
    alive = cli("health", "--port", str(port))
    assert alive.returncode == 0, alive.stdout + alive.stderr
    assert alive.stdout.startswith("alive: worker ")

    # When Stream stops, Then /readyz turns 503 naming Stream; the worker stays alive
    services.emulator.stop()
    wait_for(answers(port, "/readyz", 503), "a 503", timeout=_WAIT_SECONDS, process=process)
    assert checks(port, "/readyz") == {"database": True, "redis": True, "stream": False}
    assert get(port, "/healthz")[0] == 200

    # When Redis stops too, Then /readyz names Redis as well
    services.stop_redis()
    wait_for(
        lambda: not checks(port, "/readyz")["redis"],
        "redis",
        timeout=_WAIT_SECONDS,
        process=process,
    )
    assert checks(port, "/readyz") == {"database": True, "redis": False, "stream": False}

    # When the database goes too, Then all three are named, and no secret is in the body
    services.drop_database()
    wait_for(
        lambda: not checks(port, "/readyz")["database"],
        "the database",
        timeout=_WAIT_SECONDS,
        process=process,
    )
    assert checks(port, "/readyz") == {"database": False, "redis": False, "stream": False}
    assert API_SECRET.encode() not in get(port, "/readyz")[1]

    # And the liveness command still finds the worker's threads alive
    assert cli("health", "--port", str(port)).returncode == 0


def test_a_relay_serves_liveness_and_readiness_without_stream_credentials(
    services: Services, start: Callable[..., tuple[int, subprocess.Popen[str]]]
) -> None:
    # Given a relay running with no Stream credentials (it never calls Stream)
    port, process = start("relay", GETSTREAM_API_KEY="", GETSTREAM_API_SECRET="")

    # Then /healthz says its loop runs, /readyz that the database and Redis answer
    assert checks(port, "/healthz") == {"relay": True}
    assert get(port, "/readyz")[0] == 200
    body = json.loads(get(port, "/readyz")[1])
    assert body["checks"]["stream"]["detail"] == "skipped: GETSTREAM_API_KEY is not set"

    # When its database is dropped, Then /readyz turns 503 naming the database
    services.drop_database()
    wait_for(answers(port, "/readyz", 503), "a 503", timeout=_WAIT_SECONDS, process=process)
    assert checks(port, "/readyz") == {"database": False, "redis": True, "stream": True}
