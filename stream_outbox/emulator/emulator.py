"""The public entry points: ``Emulator`` (background thread), ``serve`` and ``run_cli``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from stream_outbox.emulator.config import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_HOST,
    EmulatorConfig,
)
from stream_outbox.emulator.rules.validation import DEFAULT_CHANNEL_TYPES
from stream_outbox.emulator.transport import admin
from stream_outbox.emulator.transport.core import EmulatorCore
from stream_outbox.emulator.transport.server import Tracker, start_server

_START_TIMEOUT = 10.0


class Emulator:
    """A Stream Chat REST emulator serving on localhost from a background thread.

    >>> with Emulator() as emu:
    ...     client = StreamChat(emu.api_key, emu.api_secret, base_url=emu.base_url)
    """

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        api_secret: str = DEFAULT_API_SECRET,
        host: str = DEFAULT_HOST,
        port: int = 0,
        rate_limits: Mapping[str, int] | None = None,
        window_seconds: float = 60.0,
        latency_ms: float = 0.0,
        channel_types: Sequence[str] = DEFAULT_CHANNEL_TYPES,
        *,
        stream_limits: bool = True,
        api_budget_ms: float | None = None,
        api_budget_cost_ms: float = 100.0,
        task_seconds: float = 0.0,
        config: EmulatorConfig | None = None,
    ) -> None:
        self.config = config or EmulatorConfig(
            api_key=api_key,
            api_secret=api_secret,
            host=host,
            port=port,
            rate_limits=dict(rate_limits or {}),
            stream_limits=stream_limits,
            window_seconds=window_seconds,
            api_budget_ms=api_budget_ms,
            api_budget_cost_ms=api_budget_cost_ms,
            task_seconds=task_seconds,
            latency_ms=latency_ms,
            channel_types=tuple(channel_types),
        )
        self.core = EmulatorCore(self.config)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._port: int | None = None

    @classmethod
    def from_config(cls, config: EmulatorConfig) -> Emulator:
        """Build an emulator from an ``EmulatorConfig``."""
        return cls(config=config)

    # ---- lifecycle ---------------------------------------------------------

    def start(self) -> Emulator:
        """Start serving in a daemon thread; return once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name="stream-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise RuntimeError("stream emulator did not start in time")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"stream emulator failed to start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and join the thread."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop_event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop_event.set)
        thread.join(_START_TIMEOUT)
        self.core.close()
        self._thread = None
        self._port = None

    def wait(self, poll_seconds: float = 0.5) -> None:
        """Block until the server thread ends (Ctrl-C raises ``KeyboardInterrupt``)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(poll_seconds)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start() if it happens before ready
            self._error = exc
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._ready.set()

    async def _serve(self) -> None:
        tracker = Tracker()
        self._stop_event = asyncio.Event()
        server = await start_server(self.core, self.config.host, self.config.port, tracker)
        self._port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            server.close()
            await tracker.close_all()
            await server.wait_closed()
            await asyncio.sleep(0.01)  # let aborted transports finish closing

    # ---- addresses ---------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the emulator listens on (known once started)."""
        if self._port is None:
            raise RuntimeError("emulator is not running")
        return self._port

    @property
    def host(self) -> str:
        """The listening host."""
        return self.config.host

    @property
    def base_url(self) -> str:
        """``http://host:port``, to pass as ``StreamChat(..., base_url=...)``."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_key(self) -> str:
        """The api_key clients must send."""
        return self.config.api_key

    @property
    def api_secret(self) -> str:
        """The secret clients sign their JWT with."""
        return self.config.api_secret

    def client(self, **options: Any) -> Any:
        """A ``stream_chat.StreamChat`` pointed at this emulator."""
        from stream_chat import StreamChat

        return StreamChat(self.api_key, self.api_secret, base_url=self.base_url, **options)

    # ---- state and faults --------------------------------------------------

    def state(self) -> dict[str, Any]:
        """``{"users": {...}, "channels": {...}, "messages": {...}}``."""
        return admin.state(self.core)

    def connections(self) -> list[dict[str, Any]]:
        """Open WebSocket connections (``connection_id``, ``user_id``, ``watching``)."""
        return admin.connections(self.core)

    def watching(self, cid: str) -> list[str]:
        """The users whose connections watch the channel ``cid``."""
        return sorted({c["user_id"] for c in self.connections() if cid in c["watching"]})

    def reset(self) -> None:
        """Empty state, faults and counters; restore the configured limits and budget."""
        self.core.reset()

    def request_counts(self) -> dict[str, Any]:
        """``{"counts": {endpoint: n}, "by_status": {"Endpoint 200": n}, "arrived":
        {endpoint: n}, "total": n}``: calls answered, and calls arrived (answered or not)."""
        return admin.request_counts(self.core)

    def request_log(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """Answered calls (``endpoint``, ``status``, wall-clock ``received``, ``answered``)."""
        return admin.request_log(self.core, endpoint)

    def reset_request_counts(self) -> None:
        """Forget the request log only."""
        admin.reset_requests(self.core)

    def inject_failure(
        self,
        endpoint: str | None,
        status: int = 500,
        times: int = 1,
        code: int | None = None,
        message: str | None = None,
    ) -> None:
        """Fail the next ``times`` calls of ``endpoint`` (``None``: any) with ``status``."""
        admin.inject_failure(self.core, endpoint, status, times, code, message)

    def set_latency(self, ms: float, endpoint: str | None = None) -> None:
        """Add ``ms`` of latency to every call, or to ``endpoint`` only."""
        admin.set_latency(self.core, ms, endpoint)

    def drop_connections(self, endpoint: str | None, times: int = 1, apply: bool = False) -> None:
        """Close the socket without answering the next ``times`` calls."""
        admin.drop_connections(self.core, endpoint, times, apply)

    def hang(
        self, endpoint: str | None, seconds: float, times: int = 1, apply: bool = False
    ) -> None:
        """Keep the next ``times`` calls waiting ``seconds`` (longer than a client timeout)."""
        admin.hang(self.core, endpoint, seconds, times, apply)

    def clear_faults(self) -> None:
        """Remove pending failures, drops, hangs and latency."""
        admin.clear_faults(self.core)

    def webhook_fault(
        self, kind: str, times: int = 1, seconds: float = 0.0, event_type: str | None = None
    ) -> None:
        """Drop, delay, duplicate or reorder the next ``times`` webhook events."""
        admin.webhook_fault(self.core, kind, times, seconds, event_type)

    def set_webhook_options(
        self, timeout: float | None = None, backoff: float | None = None
    ) -> dict[str, Any]:
        """Webhook request timeout and first pause between attempts, in seconds."""
        return admin.set_webhook_options(self.core, timeout, backoff)

    def webhook_attempts(self) -> list[dict[str, Any]]:
        """Every webhook attempt made (and event dropped), oldest first."""
        return admin.webhook_attempts(self.core)

    def wait_webhooks(self, timeout: float = 10.0) -> bool:
        """Wait until every webhook event so far is delivered or given up on."""
        return admin.wait_webhooks(self.core, timeout)

    def set_rate_limit(self, endpoint: str, limit: int | None) -> None:
        """Allow ``limit`` calls of ``endpoint`` per window; ``None`` drops the override."""
        admin.set_rate_limit(self.core, endpoint, limit)

    def set_window(self, seconds: float) -> None:
        """Change the rate-limit window (Stream's is 60 s)."""
        admin.set_window(self.core, seconds)

    def set_stream_limits(self, on: bool) -> None:
        """Switch Stream's default limits (per minute and per second) on or off."""
        admin.set_stream_limits(self.core, on)

    def set_api_budget(self, limit_ms: float | None, cost_ms: float | None = None) -> None:
        """QueryChannels' time budget per window (``None``: off) and one call's cost."""
        admin.set_api_budget(self.core, limit_ms, cost_ms)

    def set_task_seconds(self, seconds: float) -> None:
        """How long new async tasks report pending/running before completed."""
        admin.set_task_seconds(self.core, seconds)

    def import_tasks(self) -> list[dict[str, Any]]:
        """Import tasks, newest first (moved on to the state their time has come to)."""
        return admin.import_tasks(self.core)

    def set_import_options(
        self,
        state_seconds: float | None = None,
        max_bytes: int | None = None,
        upload_max_bytes: int | None = None,
    ) -> dict[str, Any]:
        """Seconds each import task state lasts, the largest import file analysis
        accepts, and the largest upload taken (Stream: 300 MB both)."""
        return admin.set_import_options(self.core, state_seconds, max_bytes, upload_max_bytes)

    def fail_next_import(self, errors: list[dict[str, Any]] | None = None) -> None:
        """Make the next import task created end ``failed``, applying nothing."""
        admin.fail_next_import(self.core, errors)


def serve(
    host: str = DEFAULT_HOST,
    port: int = 8765,
    api_key: str = DEFAULT_API_KEY,
    api_secret: str = DEFAULT_API_SECRET,
    on_ready: Callable[[Emulator], None] | None = None,
    **options: Any,
) -> None:
    """Run an emulator until Ctrl-C (``KeyboardInterrupt`` stops it cleanly)."""
    emulator = Emulator(api_key=api_key, api_secret=api_secret, host=host, port=port, **options)
    emulator.start()
    try:
        if on_ready is not None:
            on_ready(emulator)
        emulator.wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


def run_cli(
    port: int = 8765,
    api_key: str = DEFAULT_API_KEY,
    api_secret: str = DEFAULT_API_SECRET,
    host: str = DEFAULT_HOST,
) -> None:
    """Serve until Ctrl-C, first printing the base URL and credentials to use."""

    def announce(emulator: Emulator) -> None:
        print(f"Stream emulator listening on {emulator.base_url}", flush=True)
        print(f"  base URL:   {emulator.base_url}", flush=True)
        print(f"  api key:    {emulator.api_key}", flush=True)
        print(f"  api secret: {emulator.api_secret}", flush=True)
        print(f"  state:      {emulator.base_url}/_emulator/state   (Ctrl-C to stop)", flush=True)

    serve(host=host, port=port, api_key=api_key, api_secret=api_secret, on_ready=announce)
    print("Stream emulator stopped.", flush=True)
