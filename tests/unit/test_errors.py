"""The error hierarchy (one root, retryable or permanent) and what Stream's error answers mean."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

from stream_outbox import worker
from stream_outbox.worker.errors import (
    AdminError,
    BadSourceData,
    ConfigurationError,
    PermanentError,
    PermanentStreamError,
    RetryableError,
    StreamError,
    StreamOutboxError,
    TransientStreamError,
)
from stream_outbox.worker.store.locks import LockLost, TargetBusy
from stream_outbox.worker.stream.answers import (
    is_duplicate_message,
    is_not_found,
    names_missing_users,
)
from stream_outbox.worker.stream.http_session import StreamTransportError

# The stock Dramatiq CLI's module reads the environment and builds a broker when imported;
# it is read, not imported (see test_the_module_not_imported_defines_no_class).
NOT_IMPORTED = {"stream_outbox.worker.actors"}


def worker_modules() -> list[str]:
    """Every module of the worker package, by dotted name."""
    names = ["stream_outbox.worker"]
    for info in pkgutil.walk_packages(worker.__path__, prefix="stream_outbox.worker."):
        names.append(info.name)
    return sorted(names)


def exception_classes() -> list[type[BaseException]]:
    """Every exception class defined in a module of worker (not merely imported there)."""
    found: list[type[BaseException]] = []
    for name in worker_modules():
        if name in NOT_IMPORTED:
            continue
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == name:
                found.append(cls)
    return found


# -- the hierarchy ---------------------------------------------------------------------------


def test_the_walk_finds_the_modules_and_the_classes_it_should() -> None:
    # Given the worker package, walked
    names = worker_modules()
    classes = exception_classes()

    # Then its rooms' modules are there, and so are exceptions outside errors.py
    assert {
        "stream_outbox.worker.errors",
        "stream_outbox.worker.store.locks",
        "stream_outbox.worker.stream.http_session",
    } <= set(names)
    assert {
        "stream_outbox.worker.sync.history",
        "stream_outbox.worker.pipeline.job_runner",
        "stream_outbox.worker.dashboard.pages",
    } <= set(names)
    assert {StreamOutboxError, TargetBusy, LockLost, StreamTransportError} <= set(classes)
    assert len(classes) >= 14


def test_the_module_not_imported_defines_no_class() -> None:
    # Given the modules the walk reads without importing
    for name in NOT_IMPORTED:
        path = Path(worker.__file__).parent / f"{name.removeprefix('stream_outbox.worker.')}.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))

        # Then none defines a class, so no exception is missed by not importing it
        assert [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)] == [], name


def test_every_exception_of_worker_derives_from_the_root() -> None:
    # Given every exception class defined anywhere in worker
    classes = exception_classes()

    # Then each is a StreamOutboxError: one except clause catches everything raised on purpose
    strays = [
        f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, StreamOutboxError)
    ]
    assert strays == []


RETRYABLE = [TransientStreamError, TargetBusy, LockLost, StreamTransportError]


@pytest.mark.parametrize("cls", RETRYABLE, ids=lambda c: c.__name__)
def test_what_may_succeed_later_is_retryable(cls: type[BaseException]) -> None:
    # Given an error that a later attempt may not meet: Stream down, a target busy, a lock lost
    # Then it is a RetryableError and not a PermanentError
    assert issubclass(cls, RetryableError)
    assert not issubclass(cls, PermanentError)


@pytest.mark.parametrize("cls", [PermanentStreamError, BadSourceData], ids=lambda c: c.__name__)
def test_what_cannot_succeed_as_it_is_is_permanent(cls: type[BaseException]) -> None:
    # Given an error that every attempt meets until the input changes
    # Then it is a PermanentError and not a RetryableError
    assert issubclass(cls, PermanentError)
    assert not issubclass(cls, RetryableError)


def test_no_exception_is_both_retryable_and_permanent() -> None:
    # Given every exception class of worker
    # Then none is both: the retry decision reads the class and gets one answer
    both = [
        f"{c.__module__}.{c.__qualname__}"
        for c in exception_classes()
        if issubclass(c, RetryableError) and issubclass(c, PermanentError)
    ]
    assert both == []


@pytest.mark.parametrize(
    "cls",
    [
        StreamOutboxError,
        RetryableError,
        PermanentError,
        ConfigurationError,
        AdminError,
        BadSourceData,
        StreamError,
        TransientStreamError,
        PermanentStreamError,
    ],
    ids=lambda c: c.__name__,
)
def test_the_docstring_is_the_default_message(cls: type[StreamOutboxError]) -> None:
    # Given an error raised without a message
    error = cls()

    # Then its message is the first line of its class's docstring
    assert cls.__doc__ is not None
    assert str(error) == cls.__doc__.strip().splitlines()[0]
    assert str(error)
    # and a message given wins
    assert str(cls("row 7 is bad")) == "row 7 is bad"


def test_a_stream_error_describes_itself_with_endpoint_status_and_code() -> None:
    # Given Stream's answer to a send with a duplicate id, and one with no answer at all
    refused = PermanentStreamError("message exists", endpoint="SendMessage", status=400, code=4)
    unanswered = TransientStreamError("timed out: ReadTimeout")

    # When described for an outbox row's last_error
    # Then each line says where, how and what, leaving out what is not known
    assert refused.describe() == "SendMessage HTTP 400 code 4: message exists"
    assert unanswered.describe() == "stream: timed out: ReadTimeout"
    assert BadSourceData("message m1 has no created_at").describe() == (
        "message m1 has no created_at"
    )


# -- what Stream's answers mean --------------------------------------------------------------


def refusal(text: str, code: int | str | None = 4, status: int = 400) -> PermanentStreamError:
    """Stream's error answer as the gateway hands it on."""
    return PermanentStreamError(text, endpoint="SendMessage", status=status, code=code)


DUPLICATE = 'SendMessage failed with error: "a message with ID msg-42 already exists"'
MISSING_ON_CREATE = (
    "The following users are involved in channel create operation, but don't exist: [u1]. "
    "Please create the user objects before setting up the channel."
)
MISSING_MEMBERS = (
    "The following users are specified in channel.members but don't exist: [u1 u2], "
    "please create the user objects before setting up the channel"
)
MISSING_ON_ADD = "could not find user u3 from add_members"
TOO_LONG = 'SendMessage failed with error: "message.text is too long"'


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(refusal(DUPLICATE), True, id="code 4, already exists"),
        pytest.param(refusal("a message with ID x already exists"), True, id="emulator's text"),
        pytest.param(refusal(DUPLICATE, code="4"), True, id="code as text"),
        pytest.param(refusal(DUPLICATE, code=None), True, id="no code, already exists"),
        pytest.param(refusal(DUPLICATE, code=16, status=404), False, id="other code"),
        pytest.param(refusal(TOO_LONG), False, id="code 4, other text"),
        pytest.param(refusal(MISSING_MEMBERS), False, id="code 4, missing users"),
    ],
)
def test_is_duplicate_message(error: PermanentStreamError, expected: bool) -> None:
    # Given Stream's answer to a send, When asked whether the id is taken, Then:
    assert is_duplicate_message(error) is expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(refusal(MISSING_ON_CREATE), True, id="create: involved, don't exist"),
        pytest.param(refusal(MISSING_MEMBERS), True, id="create: channel.members"),
        pytest.param(refusal(MISSING_ON_ADD), True, id="add_members: could not find user"),
        pytest.param(refusal(MISSING_ON_ADD.upper()), True, id="any case"),
        pytest.param(refusal(MISSING_MEMBERS, code=16, status=404), False, id="other code"),
        pytest.param(refusal(DUPLICATE), False, id="code 4, already exists"),
        pytest.param(refusal("channel type 'x' does not exist"), False, id="does not exist"),
    ],
)
def test_names_missing_users(error: PermanentStreamError, expected: bool) -> None:
    # Given Stream's answer to a channel call, When asked whether users are missing, Then:
    assert names_missing_users(error) is expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(refusal("channel messaging:x not found", 16, 404), True, id="code 16"),
        pytest.param(refusal("channel messaging:x not found", "16", 404), True, id="code as text"),
        pytest.param(refusal("user u1 does not exist", 16, 400), True, id="code 16, status 400"),
        pytest.param(refusal("Can't find channel", 4, 404), False, id="404 with code 4"),
        pytest.param(refusal("HTTP 404", None, 404), False, id="404 without a body"),
        pytest.param(refusal(DUPLICATE), False, id="code 4"),
    ],
)
def test_is_not_found(error: PermanentStreamError, expected: bool) -> None:
    # Given Stream's answer, When asked whether it holds no such resource, Then the code decides:
    assert is_not_found(error) is expected
