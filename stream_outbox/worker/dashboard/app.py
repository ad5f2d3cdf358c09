"""The admin web dashboard: failures by cause, stats, rows, replay (server-rendered HTML).

``create_app(settings)`` returns a Starlette app: serve it with ``stream-outbox
dashboard`` or mount it in a FastAPI app, ``app.mount("/outbox", create_app(settings))``.
It goes through :mod:`stream_outbox.worker.operations` like the CLI; replays are audited as
``dashboard:<user>``. Authentication and CSRF: :mod:`stream_outbox.worker.dashboard.auth`.
"""

from __future__ import annotations

import logging
import re
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from stream_outbox.app_hooks.binding import Binding
from stream_outbox.worker.app_binding import load_binding, resolve_binding
from stream_outbox.worker.dashboard.auth import (
    IDENTITY_KEY,
    SESSION_COOKIE,
    Credentials,
    DashboardGuard,
    LoginThrottle,
    client_address,
)
from stream_outbox.worker.dashboard.pages import (
    PER_PAGE,
    PageError,
    environment,
    filter_values,
    page_and_limit,
    query,
    read_form,
    row_id_of,
    series_charts,
)
from stream_outbox.worker.error_groups import find_group
from stream_outbox.worker.errors import AdminError, ConfigurationError
from stream_outbox.worker.operations.inbox_rows import (
    REPLAYABLE,
    InboxFilters,
    count_inbox,
    get_inbox_row,
    inbox_counts,
    list_inbox,
    replay_inbox,
)
from stream_outbox.worker.operations.replay import replay, replay_group
from stream_outbox.worker.operations.rows import (
    Filters,
    RowView,
    count_rows,
    failure_groups,
    get_row,
    list_rows,
)
from stream_outbox.worker.operations.stats import read_stats
from stream_outbox.worker.operations.times import parse_time
from stream_outbox.worker.settings import Settings
from stream_outbox.worker.store.audit import naming_row
from stream_outbox.worker.store.schema import require_migrated

if TYPE_CHECKING:  # the SDK is imported when the target panel first asks Stream
    from stream_outbox.worker.stream.gateway import StreamGateway

__all__ = ["create_app", "serve"]

log = logging.getLogger(__name__)
KINDS = ("user", "conversation", "message")
TARGET_PATIENCE_S = 10.0  # how long the target panel waits out Stream's rate limits
PREVIEW_IDS = 50
INBOX_FILTERS = ("status", "event_type", "cid", "error", "since", "until")


class Dashboard:
    """The views, over one engine, binding and set of credentials."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        binding: Binding,
        credentials: Credentials,
        throttle: LoginThrottle,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.binding = binding
        self.credentials = credentials
        self.throttle = throttle
        self.templates = Jinja2Templates(env=environment())
        self._gateway: StreamGateway | None = None  # built on first use (target panel)

    # -- rendering -----------------------------------------------------------------

    def render(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        """A page; the base context (user, CSRF token, notices) filled in."""
        user = request.scope.get(IDENTITY_KEY)
        base = {
            "user": user,
            "csrf": self.credentials.csrf_token(user) if user else "",
            "session": SESSION_COOKIE in request.cookies and self.credentials.token is not None,
            "token_login": self.credentials.token is not None,
            "message": None,
            "error": None,
        }
        return self.templates.TemplateResponse(
            request, name, {**base, **context}, status_code=status
        )

    async def refuse(self, request: Request, status: int, message: str) -> Response:
        """A one-line error page with an HTTP status (also used by the guard)."""
        return self.render(request, "error.html", {"error": message}, status)

    async def on_error(self, request: Request, exc: Exception) -> Response:
        """Exception handler: bad input 400, page errors their status, database down 503."""
        if isinstance(exc, AdminError):
            return await self.refuse(request, 400, str(exc))
        if isinstance(exc, PageError):
            return await self.refuse(request, exc.status, str(exc))
        if isinstance(exc, HTTPException):
            text = "no such page" if exc.status_code == 404 else str(exc.detail)
            return await self.refuse(request, exc.status_code, text)
        if isinstance(exc, OperationalError):
            reason = str(exc.orig or exc).strip().splitlines()[0]
            return await self.refuse(request, 503, f"the database is unreachable: {reason}")
        raise exc

    async def _checked_form(self, request: Request) -> tuple[str, dict[str, str]]:
        """The POSTed form and the identity, once its CSRF token is checked (403 if not)."""
        form = await read_form(request)
        identity = str(request.scope[IDENTITY_KEY])
        if not self.credentials.csrf_valid(identity, form.get("csrf")):
            raise PageError(403, "refused: the form's CSRF token is missing or wrong; reload")
        return identity, form

    # -- pages ---------------------------------------------------------------------

    async def stats(self, request: Request) -> Response:
        """Failed rows grouped by cause first, then counts by status and kind, lag."""
        groups = await run_in_threadpool(failure_groups, self.engine)
        figures = await run_in_threadpool(read_stats, self.engine)
        charts = await run_in_threadpool(series_charts, self.engine)
        context = {"groups": groups, "stats": figures, "kinds": KINDS, "charts": charts}
        return self.render(request, "stats.html", context)

    async def rows(self, request: Request) -> Response:
        """Rows matching the filters, newest first, a page at a time."""
        raw = filter_values(request.query_params)
        context: dict[str, Any] = {"raw": raw, "rows": [], "total": 0, "page": 1, "pages": 1}
        context.update(prev_url=None, next_url=None, bulk_query=None)
        context["limit"] = request.query_params.get("limit", "")
        try:
            filters = Filters.parse(**raw)
            page, limit = page_and_limit(request.query_params)
        except AdminError as exc:
            return self.render(request, "rows.html", {**context, "error": str(exc)}, 400)
        offset = (page - 1) * limit
        rows = await run_in_threadpool(
            lambda: list_rows(self.engine, filters, limit=limit, offset=offset)
        )
        total = await run_in_threadpool(count_rows, self.engine, filters)
        context.update(rows=rows, **_pages(raw, page, limit, total))
        if raw["status"] in ("", "failed"):
            context["bulk_query"] = query({**raw, "status": ""})
        return self.render(request, "rows.html", context)

    async def row(self, request: Request) -> Response:
        """One row: payload, attempts, last error, audit history, target state."""
        row_id = row_id_of(request)
        try:
            row = await run_in_threadpool(get_row, self.engine, row_id)
        except AdminError as exc:
            raise PageError(404, str(exc)) from None
        history = await run_in_threadpool(naming_row, self.engine, row_id)
        target = await run_in_threadpool(self._target_state, row)
        message = None
        if request.query_params.get("replayed"):
            message = "Replayed: the row is pending again; the relay picks it up when due."
        context = {"row": row, "audit": history, "target": target, "message": message}
        return self.render(request, "row.html", context)

    def _target_state(self, row: RowView) -> dict[str, Any]:
        """What the database wants next to what Stream holds; a line if it cannot be read."""
        from stream_outbox.worker.verify.target import describe

        try:
            return describe(
                self.engine,
                self.settings,
                self.binding,
                kind=row.target_kind,
                target_id=row.target_id,
                gateway=self._stream(),
            )
        except Exception as exc:  # informational panel: never break the page for it
            reason = (str(exc).strip().splitlines() or [""])[0][:200]
            return {"database": f"unavailable ({type(exc).__name__}: {reason})", "stream": "-"}

    def _stream(self) -> StreamGateway | None:
        """The panel's gateway (the workers' budget, 429s waited out briefly: a page is
        waiting), built once; None without Stream's credentials (the panel says so)."""
        from stream_outbox.worker.runtime import operator_gateway

        if self._gateway is None:
            with suppress(ConfigurationError):
                self._gateway = operator_gateway(self.settings, patience=TARGET_PATIENCE_S)
        return self._gateway

    async def replay_row(self, request: Request) -> Response:
        """POST: replay one failed row, then back to its page."""
        identity, _ = await self._checked_form(request)
        row_id = row_id_of(request)
        try:
            await run_in_threadpool(get_row, self.engine, row_id)
        except AdminError as exc:
            raise PageError(404, str(exc)) from None
        await run_in_threadpool(
            lambda: replay(self.engine, actor=f"dashboard:{identity}", ids=[row_id])
        )
        log.info("dashboard: %s replayed outbox row %d", identity, row_id)
        url = request.url_for("row", row_id=str(row_id)).path
        return RedirectResponse(f"{url}?replayed=1", status_code=303)

    async def confirm_replay(self, request: Request) -> Response:
        """GET: how many failed rows the filters would replay (a dry run), and a button."""
        raw = filter_values(request.query_params)
        filters = Filters.parse(**{**raw, "status": raw["status"] or "failed"})
        ids = await run_in_threadpool(
            lambda: replay(self.engine, actor="-", filters=filters, dry_run=True)
        )
        pinned = {
            **{k: v for k, v in raw.items() if k not in ("since", "until")},
            "status": "failed",
            "since": filters.since.isoformat() if filters.since else "",
            "until": filters.until.isoformat() if filters.until else "",
        }
        context = {"ids": ids[:PREVIEW_IDS], "count": len(ids), "pinned": pinned, "raw": raw}
        return self.render(request, "confirm.html", context)

    async def replay_bulk(self, request: Request) -> Response:
        """POST: replay the failed rows matching the confirmed filters."""
        identity, form = await self._checked_form(request)
        filters = Filters.parse(**{**filter_values(form), "status": "failed"})
        per_second = _per_second(form.get("per_second", ""))
        ids = await run_in_threadpool(
            lambda: replay(
                self.engine,
                actor=f"dashboard:{identity}",
                filters=filters,
                per_second=per_second,
            )
        )
        log.info("dashboard: %s replayed %d outbox rows by filter", identity, len(ids))
        context = {"count": len(ids), "ids": ids[:PREVIEW_IDS], "seconds": len(ids) / per_second}
        return self.render(request, "replayed.html", context)

    async def confirm_group(self, request: Request) -> Response:
        """GET: the failed rows of one cause, as far as now, and a button to replay them."""
        key = _key_of(request)
        groups = await run_in_threadpool(failure_groups, self.engine, with_ids=True)
        try:
            group = find_group(groups, key)
        except AdminError as exc:
            raise PageError(404, str(exc)) from None
        context = {"group": group, "ids": group.ids[:PREVIEW_IDS]}
        return self.render(request, "confirm_group.html", context)

    async def replay_group(self, request: Request) -> Response:
        """POST: replay the failed rows of one cause seen by the confirmed time."""
        identity, form = await self._checked_form(request)
        key = _key_of(request)
        if not form.get("until"):
            raise AdminError("the form lacks the time the cause was seen until: reload it")
        until = parse_time(form["until"])
        per_second = _per_second(form.get("per_second", ""))
        ids = await run_in_threadpool(
            lambda: replay_group(
                self.engine,
                actor=f"dashboard:{identity}",
                key=key,
                until=until,
                per_second=per_second,
            )
        )
        log.info("dashboard: %s replayed %d outbox rows of cause %s", identity, len(ids), key)
        context = {"count": len(ids), "ids": ids[:PREVIEW_IDS], "seconds": len(ids) / per_second}
        return self.render(request, "replayed.html", context)

    # -- the inbox (the inbound side) ----------------------------------------------

    async def inbox(self, request: Request) -> Response:
        """Inbox rows (Stream's events) by status, type and channel, newest first."""
        raw = {name: (request.query_params.get(name) or "").strip() for name in INBOX_FILTERS}
        counts = await run_in_threadpool(inbox_counts, self.engine)
        context: dict[str, Any] = {"raw": raw, "counts": counts, "rows": [], "total": 0}
        try:
            filters = InboxFilters.parse(**raw)
            page, limit = page_and_limit(request.query_params)
        except AdminError as exc:
            return self.render(request, "inbox.html", {**context, "error": str(exc)}, 400)
        offset = (page - 1) * limit
        rows = await run_in_threadpool(
            lambda: list_inbox(self.engine, filters, limit=limit, offset=offset)
        )
        total = await run_in_threadpool(count_inbox, self.engine, filters)
        context.update(rows=rows, **_pages(raw, page, limit, total))
        return self.render(request, "inbox.html", context)

    async def inbox_row(self, request: Request) -> Response:
        """One inbox row: the event as Stream sent it, attempts, error or reason."""
        row_id = row_id_of(request)
        try:
            row = await run_in_threadpool(get_inbox_row, self.engine, row_id)
        except AdminError as exc:
            raise PageError(404, str(exc)) from None
        message = None
        if request.query_params.get("replayed"):
            message = "Replayed: the row is pending again; the inbound runner applies it."
        replayable = row.status in REPLAYABLE
        context = {"row": row, "message": message, "replayable": replayable}
        return self.render(request, "inbox_row.html", context)

    async def replay_inbox_row(self, request: Request) -> Response:
        """POST: send one failed or ignored inbox row back to pending, then to its page."""
        identity, _ = await self._checked_form(request)
        row_id = row_id_of(request)
        await run_in_threadpool(
            lambda: replay_inbox(self.engine, actor=f"dashboard:{identity}", ids=[row_id])
        )
        log.info("dashboard: %s replayed inbox row %d", identity, row_id)
        url = request.url_for("inbox_row", row_id=str(row_id)).path
        return RedirectResponse(f"{url}?replayed=1", status_code=303)

    # -- token login ---------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        """The token login form (only when a token is configured)."""
        if self.credentials.token is None:
            raise PageError(404, "token login is off: OUTBOX_DASHBOARD_TOKEN is not set")
        return self.render(request, "login.html", {})

    async def login(self, request: Request) -> Response:
        """POST: a right token sets the session cookie; a wrong one gets 401."""
        if self.credentials.token is None:
            raise PageError(404, "token login is off: OUTBOX_DASHBOARD_TOKEN is not set")
        client = client_address(request)
        wait = self.throttle.retry_after(client)
        if wait is not None:
            response = self.render(
                request, "login.html", {"error": "too many failed sign-ins: try later"}, 429
            )
            response.headers["Retry-After"] = str(wait)
            return response
        form = await read_form(request)
        if not self.credentials.token_matches(form.get("token", "")):
            self.throttle.failed(client)
            return self.render(request, "login.html", {"error": "wrong token"}, 401)
        response = RedirectResponse(request.url_for("stats").path, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            self.credentials.new_session(),
            max_age=12 * 3600,
            path=_cookie_path(request),
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(self, request: Request) -> Response:
        """POST: forget the session cookie."""
        await self._checked_form(request)
        response = RedirectResponse(request.url_for("login").path, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=_cookie_path(request), httponly=True)
        return response


def _pages(raw: dict[str, str], page: int, limit: int, total: int) -> dict[str, Any]:
    """A page's place among ``total`` rows: its number, how many, and the query strings of
    the pages before and after it (None at either end)."""
    pages = max(1, -(-total // limit))
    per = {**raw, "limit": limit if limit != PER_PAGE else ""}
    return {
        "total": total,
        "page": page,
        "pages": pages,
        "prev_url": query({**per, "page": page - 1}) if page > 1 else None,
        "next_url": query({**per, "page": page + 1}) if page < pages else None,
    }


def _per_second(text: str) -> float:
    try:
        value = float(text or 50)
    except ValueError:
        raise AdminError(f"per second must be a number, not {text!r}") from None
    if not 0 < value <= 10_000:
        raise AdminError("per second must be above 0 and at most 10000")
    return value


def _key_of(request: Request) -> str:
    """The cause's key in the path; 404 when it cannot be one."""
    key = str(request.path_params["key"])
    if not re.fullmatch(r"[0-9a-f]{12}", key):
        raise PageError(404, f"{key[:40]!r} is not the key of a cause")
    return key


def _cookie_path(request: Request) -> str:
    return str(request.scope.get("root_path") or "/")


def create_app(
    settings: Settings, engine: Engine | None = None, binding: Binding | None = None
) -> Starlette:
    """The dashboard as an ASGI app; :class:`ConfigurationError` without credentials."""
    credentials = Credentials.from_settings(settings)
    if engine is None:
        engine = create_engine(settings.database_url, pool_pre_ping=True)
    if binding is None:
        binding = load_binding(settings.binding)
    throttle = LoginThrottle(settings.dashboard_lockout)
    views = Dashboard(settings, engine, binding, credentials, throttle)
    routes = [
        Route("/", views.stats, name="stats"),
        Route("/rows", views.rows, name="rows"),
        Route("/rows/{row_id}", views.row, name="row"),
        Route("/rows/{row_id}/replay", views.replay_row, methods=["POST"], name="replay_row"),
        Route("/replay", views.confirm_replay, name="confirm_replay"),
        Route("/replay", views.replay_bulk, methods=["POST"], name="replay_bulk"),
        Route("/errors/{key}/replay", views.confirm_group, name="confirm_group"),
        Route("/errors/{key}/replay", views.replay_group, methods=["POST"], name="replay_group"),
        Route("/inbox", views.inbox, name="inbox"),
        Route("/inbox/{row_id}", views.inbox_row, name="inbox_row"),
        Route(
            "/inbox/{row_id}/replay",
            views.replay_inbox_row,
            methods=["POST"],
            name="replay_inbox_row",
        ),
        Route("/login", views.login_form, name="login"),
        Route("/login", views.login, methods=["POST"], name="login_post"),
        Route("/logout", views.logout, methods=["POST"], name="logout"),
    ]
    handled: list[Any] = [AdminError, PageError, HTTPException, OperationalError]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(
                DashboardGuard, credentials=credentials, refuse=views.refuse, throttle=throttle
            )
        ],
        exception_handlers={kind: views.on_error for kind in handled},
    )
    app.state.sign_in = " and ".join(credentials.methods)
    return app


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8700) -> None:
    """Run the dashboard with uvicorn until SIGINT/SIGTERM (refuses without credentials)."""
    import uvicorn

    engine = create_engine(settings.database_url, pool_pre_ping=True)
    require_migrated(engine)
    app = create_app(settings, engine, resolve_binding(engine, settings.binding))
    log.info("dashboard on http://%s:%d/ (sign-in: %s)", host, port, app.state.sign_in)
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
