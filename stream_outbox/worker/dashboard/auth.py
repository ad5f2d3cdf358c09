"""Who may use the dashboard, and which requests may change anything.

Credentials come from the settings: HTTP Basic (``OUTBOX_DASHBOARD_USER`` and
``OUTBOX_DASHBOARD_PASSWORD``) and/or a token (``OUTBOX_DASHBOARD_TOKEN``), sent as
``Authorization: Bearer <token>`` or typed once into the login form, which sets an
HttpOnly, SameSite=Strict session cookie. Session cookies and CSRF tokens are HMACs
under a key derived (PBKDF2) from the configured credentials: they hold across
processes and restarts, and stop working when the credentials change.

Every POST must come from the dashboard's own origin (``Origin``, or ``Referer`` when
there is no ``Origin``) and carry the CSRF token of the authenticated identity.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import limits
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from pydantic import SecretStr
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stream_outbox.worker.errors import ConfigurationError
from stream_outbox.worker.settings import Settings

__all__ = [
    "IDENTITY_KEY",
    "SESSION_COOKIE",
    "TOKEN_IDENTITY",
    "Credentials",
    "DashboardGuard",
    "LoginThrottle",
    "client_address",
    "route_path",
    "same_origin",
]

IDENTITY_KEY = "stream_outbox.dashboard_user"
SESSION_COOKIE = "stream_outbox_dashboard"
SESSION_SECONDS = 12 * 3600
TOKEN_IDENTITY = "token"
PUBLIC_PATHS = frozenset({"/login"})
NEEDED = (
    "the dashboard needs credentials: set OUTBOX_DASHBOARD_USER and "
    "OUTBOX_DASHBOARD_PASSWORD (HTTP Basic) and/or OUTBOX_DASHBOARD_TOKEN"
)
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
}


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None and value.get_secret_value() else None


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True)
class Credentials:
    """The configured ways in, and the key that signs sessions and CSRF tokens."""

    user: str | None
    password: str | None = field(repr=False)
    token: str | None = field(repr=False)
    key: bytes = field(repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Credentials:
        """Read the dashboard settings; :class:`ConfigurationError` when none or half is set."""
        user = (settings.dashboard_user or "").strip() or None
        password = _secret(settings.dashboard_password)
        token = _secret(settings.dashboard_token)
        if user is not None and password is None:
            raise ConfigurationError("OUTBOX_DASHBOARD_PASSWORD is not set (needed with the user)")
        if password is not None and user is None:
            raise ConfigurationError("OUTBOX_DASHBOARD_USER is not set (needed with the password)")
        if user is None and token is None:
            raise ConfigurationError(NEEDED)
        material = "\0".join([user or "", password or "", token or ""]).encode()
        key = hashlib.pbkdf2_hmac("sha256", material, b"stream-outbox-dashboard", 100_000)
        return cls(user, password, token, key)

    @property
    def methods(self) -> list[str]:
        """The ways in that are configured: ``basic`` and/or ``token``."""
        return [m for m, on in (("basic", self.user), ("token", self.token)) if on]

    def identify(self, headers: Headers, cookies: dict[str, str]) -> str | None:
        """The user a request authenticates as (``token`` for the token), or None."""
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic" and self.user is not None:
            return self._basic(value.strip())
        if scheme.lower() == "bearer" and self.token is not None:
            return TOKEN_IDENTITY if _equal(value.strip(), self.token) else None
        session = cookies.get(SESSION_COOKIE)
        if session and self.token is not None and self._session_valid(session):
            return TOKEN_IDENTITY
        return None

    def _basic(self, value: str) -> str | None:
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        assert self.user is not None and self.password is not None
        user_ok = _equal(user, self.user)
        password_ok = _equal(password, self.password)
        return self.user if sep and user_ok and password_ok else None

    def token_matches(self, given: str) -> bool:
        """Whether a token typed into the login form is the configured one."""
        return self.token is not None and _equal(given.strip(), self.token)

    def _sign(self, purpose: str, value: str) -> str:
        return hmac.new(self.key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def new_session(self, now: float | None = None) -> str:
        """A session cookie value for a token login: expiry and its signature."""
        expires = str(int((now or time.time()) + SESSION_SECONDS))
        return f"{expires}.{self._sign('session', expires)}"

    def _session_valid(self, value: str, now: float | None = None) -> bool:
        expires, _, signature = value.partition(".")
        if not expires.isdigit() or int(expires) < (now or time.time()):
            return False
        return _equal(signature, self._sign("session", expires))

    def csrf_token(self, identity: str) -> str:
        """The CSRF token of an authenticated identity (a hidden field in every form)."""
        return self._sign("csrf", identity)

    def csrf_valid(self, identity: str, given: str | None) -> bool:
        """Whether a submitted form carries the identity's CSRF token."""
        return given is not None and _equal(given, self.csrf_token(identity))


class LoginThrottle:
    """Failed sign-ins per client address in a moving window (the ``limits`` library, in
    this process's memory). Past the limit a client is refused with 429, right credentials
    or not, until the window moves on. Behind a proxy every client shares its address."""

    def __init__(self, rate: str) -> None:
        self._rate = limits.parse(rate)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or None when it may now."""
        if self._limiter.test(self._rate, client):
            return None
        stats = self._limiter.get_window_stats(self._rate, client)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def failed(self, client: str) -> None:
        """Count one failed sign-in of ``client``."""
        self._limiter.hit(self._rate, client)


def client_address(request: Request) -> str:
    """The peer address a request came from (the throttle's key)."""
    return request.client.host if request.client is not None else "unknown"


def same_origin(headers: Headers) -> bool:
    """Whether a request's ``Origin`` (or ``Referer`` without one) names its own host."""
    source = headers.get("origin") or headers.get("referer")
    host = headers.get("host", "")
    if not source or source == "null" or not host:
        return False
    return urlsplit(source).netloc.lower() == host.lower()


def route_path(scope: Scope) -> str:
    """The request's path inside the dashboard (without the mount prefix)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


Refusal = Callable[[Request, int, str], Awaitable[Response]]


class DashboardGuard:
    """ASGI middleware: authenticate every request, check POST origins, add safety headers.

    Unauthenticated requests (other than the login form) get 401 and see nothing; a
    client past its failed sign-ins gets 429; a POST from another origin gets 403. The
    identity is left in the scope for the views.
    """

    def __init__(
        self, app: ASGIApp, credentials: Credentials, refuse: Refusal, throttle: LoginThrottle
    ) -> None:
        self.app = app
        self.credentials = credentials
        self.refuse = refuse
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Let the request through, or answer 401/403 without touching the views."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        request = Request(scope, receive)
        refusal = await self._check(request)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    async def _check(self, request: Request) -> Response | None:
        if request.method == "POST" and not same_origin(request.headers):
            return await self.refuse(request, 403, "refused: the form was not sent from this site")
        if route_path(request.scope) in PUBLIC_PATHS:
            return None
        client = client_address(request)
        presented = "authorization" in request.headers or SESSION_COOKIE in request.cookies
        wait = self.throttle.retry_after(client) if presented else None
        if wait is not None:
            response = await self.refuse(request, 429, "too many failed sign-ins: try later")
            response.headers["Retry-After"] = str(wait)
            return response
        identity = self.credentials.identify(request.headers, request.cookies)
        if identity is None:
            if presented:
                self.throttle.failed(client)
            response = await self.refuse(request, 401, "authentication required")
            if self.credentials.user is not None:
                response.headers["WWW-Authenticate"] = (
                    'Basic realm="stream-outbox", charset="UTF-8"'
                )
            elif self.credentials.token is not None:
                response.headers["WWW-Authenticate"] = 'Bearer realm="stream-outbox"'
            return response
        request.scope[IDENTITY_KEY] = identity
        return None
