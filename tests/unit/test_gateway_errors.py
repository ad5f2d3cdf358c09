"""How the Stream gateway classifies failures: transient (retry) or permanent (fail the rows)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests.structures import CaseInsensitiveDict
from stream_chat.base.exceptions import StreamAPIException

from stream_outbox.worker.errors import PermanentStreamError, StreamError, TransientStreamError
from stream_outbox.worker.stream.answers import error_from, rate_limit_wait, refuses_the_message
from stream_outbox.worker.stream.gateway import StreamGateway

API_KEY = "unit-key"
API_SECRET = "unit-secret-" + "s" * 32


@pytest.fixture()
def gateway() -> Iterator[StreamGateway]:
    """A gateway to a port nothing listens on (the discard port of localhost)."""
    gw = StreamGateway(API_KEY, API_SECRET, base_url="http://127.0.0.1:9", timeout=2.0)
    yield gw
    client = getattr(gw._local, "client", None)
    if client is not None:
        client.session.close()


def api_exception(status: int, code: int | None = None, message: str = "boom") -> Any:
    """A StreamAPIException as the SDK raises it for a JSON error body (or a bare one)."""
    if code is None:
        return StreamAPIException("<html>bad gateway</html>", status)
    body = {"code": code, "message": message, "StatusCode": status}
    return StreamAPIException(json.dumps(body), status)


def raising(exc: BaseException) -> Any:
    def call(client: Any, *args: Any, **kwargs: Any) -> Any:
        raise exc

    return call


# -- error_from ---------------------------------------------------------------------


def test_429_is_transient_and_waits_for_the_reset(gateway: StreamGateway) -> None:
    # Given Stream's rate-limit headers saying the window resets in 30 s
    gateway._local.last_headers = {"X-RateLimit-Reset": str(int(time.time()) + 30)}

    # When classifying a 429
    error = error_from(
        "UpdateUsers", api_exception(429, 9, "Too many requests"), gateway._local.last_headers
    )

    # Then it is transient, with the wait until the reset
    assert isinstance(error, TransientStreamError)
    assert error.retry_after is not None
    assert 28.0 <= error.retry_after <= 30.0
    assert (error.endpoint, error.status, error.code) == ("UpdateUsers", 429, 9)


def test_429_reads_the_reset_from_the_response_hook_in_any_case(gateway: StreamGateway) -> None:
    # Given a real response, its header in lower case, seen by the session hook
    response = requests.Response()
    response.headers = CaseInsensitiveDict({"x-ratelimit-reset": str(int(time.time()) + 10)})
    gateway._remember(response)

    # When classifying a 429
    error = error_from("UpdateUsers", api_exception(429, 9), gateway._local.last_headers)

    # Then the reset is found
    assert isinstance(error, TransientStreamError)
    assert error.retry_after is not None
    assert 8.0 <= error.retry_after <= 10.0


def test_429_with_a_reset_in_the_past_retries_at_once(gateway: StreamGateway) -> None:
    gateway._local.last_headers = {"X-RateLimit-Reset": str(int(time.time()) - 5)}

    error = error_from("UpdateUsers", api_exception(429, 9), gateway._local.last_headers)

    assert isinstance(error, TransientStreamError)
    assert error.retry_after == 0.0


def test_429_without_a_reset_header_has_no_retry_after(gateway: StreamGateway) -> None:
    gateway._local.last_headers = {}

    error = error_from("UpdateUsers", api_exception(429, 9), gateway._local.last_headers)

    assert isinstance(error, TransientStreamError)
    assert error.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_and_timeouts_are_transient(gateway: StreamGateway, status: int) -> None:
    # Given Stream failing on its side (or the request timing out there)
    gateway._local.last_headers = {}

    # When classifying, with or without a JSON body
    with_body = error_from(
        "GetOrCreateChannel", api_exception(status, -1, "oops"), gateway._local.last_headers
    )
    bare = error_from("GetOrCreateChannel", api_exception(status), gateway._local.last_headers)

    # Then both are transient, without a reset time
    for error in (with_body, bare):
        assert isinstance(error, TransientStreamError)
        assert error.status == status
        assert error.retry_after is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_client_errors_are_permanent(gateway: StreamGateway, status: int) -> None:
    gateway._local.last_headers = {}

    error = error_from("UpdateChannel", api_exception(status, 4), gateway._local.last_headers)

    assert isinstance(error, PermanentStreamError)
    assert not isinstance(error, TransientStreamError)


def test_a_validation_error_describes_endpoint_status_and_code(gateway: StreamGateway) -> None:
    # Given Stream rejecting an upsert (code 4: input error)
    gateway._local.last_headers = {}
    exc = api_exception(400, 4, 'UpdateUsers failed with error: "user.id is too long"')

    # When classifying it
    error = error_from("UpdateUsers", exc, gateway._local.last_headers)

    # Then it is permanent, and its one-line description says where and what
    assert isinstance(error, PermanentStreamError)
    assert (error.endpoint, error.status, error.code) == ("UpdateUsers", 400, 4)
    assert error.describe() == (
        'UpdateUsers HTTP 400 code 4: UpdateUsers failed with error: "user.id is too long"'
    )


def test_a_bare_error_body_is_described_by_its_status(gateway: StreamGateway) -> None:
    gateway._local.last_headers = {}

    error = error_from("DeleteChannel", api_exception(400), gateway._local.last_headers)

    assert isinstance(error, PermanentStreamError)
    assert error.code is None
    assert error.describe() == "DeleteChannel HTTP 400: HTTP 400"


@pytest.mark.parametrize(("status", "code"), [(400, 4), (429, 9), (503, None), (401, 5)])
def test_descriptions_never_contain_the_secret(
    gateway: StreamGateway, status: int, code: int | None
) -> None:
    gateway._local.last_headers = {"X-RateLimit-Reset": str(int(time.time()) + 1)}

    error = error_from(
        "UpdateUsers", api_exception(status, code, "signature invalid"), gateway._local.last_headers
    )

    assert API_SECRET not in error.describe()
    assert API_SECRET not in str(error)
    assert API_SECRET not in repr(gateway)


# -- _call ----------------------------------------------------------------------------


def test_call_raises_the_classified_error_and_counts_it(gateway: StreamGateway) -> None:
    # Given an SDK call that answers 400
    # When the gateway makes it
    with pytest.raises(PermanentStreamError) as raised:
        gateway.call("UpdateUsers", raising(api_exception(400, 4, "bad user")))

    # Then the SDK exception is replaced (no chained SDK traceback) and the call is counted
    assert raised.value.describe() == "UpdateUsers HTTP 400 code 4: bad user"
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__
    assert gateway.thread_calls() == 1


def test_call_reads_the_reset_of_the_failed_response(gateway: StreamGateway) -> None:
    # Given an SDK call whose response (seen by the session hook) carries a reset, then 429s
    reset = int(time.time()) + 20

    def rate_limited(client: Any) -> Any:
        gateway._local.last_headers = {"X-RateLimit-Reset": str(reset)}
        raise api_exception(429, 9, "Too many requests")

    # When the gateway makes it
    with pytest.raises(TransientStreamError) as raised:
        gateway.call("GetOrCreateChannel", rate_limited)

    # Then the error waits until that reset
    assert raised.value.retry_after is not None
    assert 18.0 <= raised.value.retry_after <= 20.0


def test_call_does_not_reuse_headers_of_an_earlier_response(gateway: StreamGateway) -> None:
    # Given headers left over from an earlier call
    gateway._local.last_headers = {"X-RateLimit-Reset": str(int(time.time()) + 50)}

    # When a call fails with a 429 before any response was seen
    with pytest.raises(TransientStreamError) as raised:
        gateway.call("UpdateUsers", raising(api_exception(429, 9)))

    # Then the stale reset is not used
    assert raised.value.retry_after is None


def test_a_patient_call_waits_out_429s_as_stream_asks_and_goes_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a patient gateway and Stream answering 429 twice (a reset 2 s away, then none)
    patient = StreamGateway(API_KEY, API_SECRET, base_url="http://127.0.0.1:9", patience=60)
    waits: list[float] = []
    monkeypatch.setattr("stream_outbox.worker.stream.gateway.time.sleep", waits.append)
    answers = iter([str(int(time.time()) + 2), None])

    def limited_twice(client: Any) -> Any:
        reset = next(answers, "done")
        if reset == "done":
            return {"channels": []}
        patient._local.last_headers = {"X-RateLimit-Reset": reset} if reset else {}
        raise api_exception(429, 9, "Too many requests")

    # When it calls, Then the third call's answer comes back
    assert patient.call("QueryChannels", limited_twice) == {"channels": []}
    # after waiting until the reset, then a second (Stream named no reset)
    assert len(waits) == 2
    assert 1.0 <= waits[0] <= 2.1
    assert waits[1] == pytest.approx(1.05)


def test_a_patient_call_still_fails_at_once_on_other_errors_and_past_its_patience(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    patient = StreamGateway(API_KEY, API_SECRET, base_url="http://127.0.0.1:9", patience=5)
    waits: list[float] = []
    monkeypatch.setattr("stream_outbox.worker.stream.gateway.time.sleep", waits.append)

    # A 503 is not waited out here
    with pytest.raises(TransientStreamError):
        patient.call("QueryChannels", raising(api_exception(503, -1)))
    assert waits == []

    # nor a 429 whose reset is further away than the patience left
    def far(client: Any) -> Any:
        patient._local.last_headers = {"X-RateLimit-Reset": str(int(time.time()) + 30)}
        raise api_exception(429, 9)

    with pytest.raises(TransientStreamError):
        patient.call("QueryChannels", far)
    assert waits == []


def test_the_worker_s_gateway_never_waits_out_a_429(gateway: StreamGateway) -> None:
    # (its job goes back to the queue with Stream's reset time instead)
    with pytest.raises(TransientStreamError):
        gateway.call("UpdateUsers", raising(api_exception(429, 9)))


@pytest.mark.parametrize(
    ("status", "retry_after", "left", "wait"),
    [
        (429, 2.0, 60.0, 2.05),  # Stream's reset (or Retry-After), a little past it
        (429, None, 60.0, 1.05),  # a 429 naming no time: a second
        (None, 1.0, 60.0, 1.05),  # the shared budget had no slot in time
        (429, 30.0, 10.0, None),  # further than the patience left
        (503, None, 60.0, None),  # not a rate limit
        (None, None, 60.0, None),  # a timeout
    ],
)
def test_how_long_a_rate_limited_call_waits(
    status: int | None, retry_after: float | None, left: float, wait: float | None
) -> None:
    error = TransientStreamError("x", status=status, retry_after=retry_after)
    assert rate_limit_wait(error, left) == (None if wait is None else pytest.approx(wait))


def test_missing_ok_turns_not_found_into_nothing(gateway: StreamGateway) -> None:
    # Given Stream answering "does not exist" (code 16)
    not_found = api_exception(404, 16, "channel does not exist")

    # When the call accepts a missing target, Then it returns nothing
    assert gateway.call("DeleteChannel", raising(not_found), missing_ok=True) is None

    # And when it does not, it is a permanent error
    with pytest.raises(PermanentStreamError):
        gateway.call("DeleteChannel", raising(not_found))

    # And missing_ok does not hide other errors
    with pytest.raises(PermanentStreamError):
        gateway.call("DeleteChannel", raising(api_exception(400, 4)), missing_ok=True)


def test_a_successful_call_returns_the_result(gateway: StreamGateway) -> None:
    result = gateway.call("QueryUsers", lambda client, q: {"users": [], "q": q}, "x")

    assert result == {"users": [], "q": "x"}
    assert gateway.thread_calls() == 1


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (requests.ReadTimeout("read timed out"), "timed out: ReadTimeout"),
        (requests.ConnectTimeout("connect timed out"), "timed out: ConnectTimeout"),
        (requests.ConnectionError("reset by peer"), "connection failed: ConnectionError"),
        (
            requests.exceptions.ChunkedEncodingError("cut"),
            "connection failed: ChunkedEncodingError",
        ),
    ],
)
def test_network_failures_are_transient(
    gateway: StreamGateway, exc: requests.RequestException, text: str
) -> None:
    with pytest.raises(TransientStreamError) as raised:
        gateway.call("SendMessage", raising(exc))

    assert raised.value.describe() == f"SendMessage: {text}"
    assert raised.value.retry_after is None


def test_a_refused_connection_is_transient(gateway: StreamGateway) -> None:
    # Given nothing listening at Stream's address
    # When upserting a user over the real SDK and requests
    with pytest.raises(TransientStreamError) as raised:
        gateway.upsert_users([{"id": "u1", "name": "Una"}])

    # Then it is a transient connection error on UpdateUsers
    error = raised.value
    assert isinstance(error, StreamError)
    assert error.endpoint == "UpdateUsers"
    assert error.status is None
    assert error.describe() == "UpdateUsers: connection failed: NewConnectionError"
    assert API_SECRET not in error.describe()
    assert gateway.thread_calls() == 1


def test_calls_are_counted_per_thread(gateway: StreamGateway) -> None:
    # Given a call made on another thread (another job of the same worker)
    other = threading.Thread(target=lambda: gateway.call("QueryUsers", lambda client: {}))
    other.start()
    other.join()

    # When this thread makes two calls
    before = gateway.thread_calls()
    gateway.call("QueryUsers", lambda client: {})
    gateway.call("QueryUsers", lambda client: {})

    # Then this thread's count grows by its own two only
    assert (before, gateway.thread_calls()) == (0, 2)


@pytest.mark.parametrize(
    ("code", "alone"),
    [(20, True), ("20", True), (22, True), (4, False), (16, False), (17, False), (None, False)],
)
def test_only_a_refusal_of_the_message_itself_lets_a_history_copy_go_on(
    code: int | str | None, alone: bool
) -> None:
    # Too long (20) or too big (22) is the message's own; an input error, a missing channel
    # or a forbidden call (or an answer without a code) is not
    error = PermanentStreamError("refused", endpoint="SendMessage", status=400, code=code)
    assert refuses_the_message(error) is alone
