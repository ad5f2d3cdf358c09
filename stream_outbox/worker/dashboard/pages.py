"""Helpers of the dashboard's pages: templates, query and form parsing, formatting."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jinja2
from markupsafe import Markup
from sqlalchemy import Engine
from starlette.requests import Request

from stream_outbox.worker.dashboard.charts import lag_chart, settled_chart
from stream_outbox.worker.errors import AdminError, StreamOutboxError
from stream_outbox.worker.operations.series import WINDOWS, read_series

__all__ = [
    "FILTER_FIELDS",
    "PER_PAGE",
    "PageError",
    "environment",
    "filter_values",
    "page_and_limit",
    "query",
    "read_form",
    "row_id_of",
]

FILTER_FIELDS = ("status", "kind", "target_id", "error", "since", "until")
PER_PAGE = 50
MAX_PER_PAGE = 500
MAX_FORM_BYTES = 16_384


class PageError(StreamOutboxError):
    """A request the dashboard answers with an error page: HTTP status and one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def when(value: datetime | str | None) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SS UTC`` (ISO text accepted)."""
    if value is None:
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty(value: Any) -> str:
    """JSON for people: indented, keys sorted; text stays text."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def age(seconds: float) -> str:
    """``3725`` -> ``1h 2m 5s``."""
    whole = int(seconds)
    parts = [(whole // 3600, "h"), (whole % 3600 // 60, "m"), (whole % 60, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n]
    return " ".join(shown) or f"{seconds:.1f}s"


@jinja2.pass_context
def path_for(context: Mapping[str, Any], name: str, /, **params: Any) -> str:
    """The path of a named route, mount prefix included (links stay on the same host)."""
    request: Request = context["request"]
    return str(request.url_for(name, **params).path)


def environment() -> jinja2.Environment:
    """The templates in ``worker/dashboard/templates``, autoescaped, strict about unknown names."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("stream_outbox.worker.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, pretty=pretty, age=age)
    env.globals["path"] = path_for
    return env


def filter_values(source: Mapping[str, str]) -> dict[str, str]:
    """The filter fields of a query or form, as typed (blank when absent)."""
    return {name: (source.get(name) or "").strip() for name in FILTER_FIELDS}


def query(values: Mapping[str, object]) -> str:
    """A query string of the values that are set (``""`` when none)."""
    text = urlencode({k: v for k, v in values.items() if v not in (None, "")})
    return f"?{text}" if text else ""


def _whole(source: Mapping[str, str], name: str, default: int) -> int:
    text = (source.get(name) or "").strip()
    if not text:
        return default
    if not text.isdigit():
        raise AdminError(f"{name} must be a whole number, not {text!r}")
    return int(text)


def page_and_limit(source: Mapping[str, str]) -> tuple[int, int]:
    """``page`` (from 1) and ``limit`` (1 to 500 rows per page)."""
    page, limit = _whole(source, "page", 1), _whole(source, "limit", PER_PAGE)
    if page < 1:
        raise AdminError("page must be at least 1")
    if not 1 <= limit <= MAX_PER_PAGE:
        raise AdminError(f"limit must be between 1 and {MAX_PER_PAGE}")
    return page, limit


def row_id_of(request: Request) -> int:
    """The row id in the path; 400 when it is not a number."""
    text = str(request.path_params["row_id"])
    if not text.isdigit() or len(text) > 18:
        raise PageError(400, f"{text!r} is not an outbox row id")
    return int(text)


async def read_form(request: Request) -> dict[str, str]:
    """An URL-encoded form body (an empty body is an empty form; 413 beyond 16 KiB)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise PageError(413, "the form is too large")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body and content_type != "application/x-www-form-urlencoded":
        raise PageError(415, "expected a form (application/x-www-form-urlencoded)")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def series_charts(engine: Engine) -> dict[str, dict[str, Markup]]:
    """Per window (the last hour, the last day): the SVG of rows settled per step and the
    one of the oldest pending age, read from the outbox table (SVG: no script)."""
    charts: dict[str, dict[str, Markup]] = {}
    with engine.connect() as conn:
        for window in WINDOWS:
            series = read_series(conn, window)
            step = "minute" if series.step_seconds == 60 else f"{series.step_seconds / 60:.0f} min"
            charts[window] = {
                "settled": Markup(settled_chart(f"rows settled per {step}", series.points)),
                "lag": Markup(lag_chart("oldest pending age", series.points)),
            }
    return charts
