"""The HTTP session the Stream SDK sends through: urllib3's pool, without requests on top.

The SDK calls ``session.get/post/put/patch/delete(url, data=, headers=, params=,
timeout=)`` and reads ``status_code``, ``text`` and ``headers`` of the answer. Through
``requests`` a call costs the worker about 0.45 ms of CPU; straight through urllib3
(the pool requests itself uses) about 0.2 ms, and the worker makes one call or more
per channel. Errors keep their meaning: timeouts and connection failures raise
:class:`StreamTransportError` (``timed_out`` tells which).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import certifi
import requests
import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from stream_outbox.worker.errors import RetryableError

__all__ = ["PooledSession", "StreamResponseLike", "StreamTransportError", "http_session"]


class StreamTransportError(RetryableError):
    """The call did not get an answer: a timeout, or the connection failed."""

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class StreamResponseLike:
    """What the SDK reads of an answer (as of a ``requests.Response``)."""

    __slots__ = ("headers", "status_code", "text")

    def __init__(self, status_code: int, text: str, headers: Mapping[str, str]) -> None:
        self.status_code = status_code
        self.text = text
        self.headers = headers


class PooledSession:
    """A keep-alive connection pool to one Stream base URL, shaped like a requests session."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        on_response: Callable[[StreamResponseLike], None] | None = None,
    ) -> None:
        options: dict[str, Any] = {}
        if urlsplit(base_url).scheme == "https":
            options["ca_certs"] = certifi.where()  # the bundle requests would use
        self._pool = urllib3.connection_from_url(
            base_url,
            maxsize=2,
            timeout=urllib3.Timeout(total=timeout),
            retries=urllib3.Retry(0, read=False, redirect=False),
            **options,
        )
        self._on_response = on_response

    def get(self, url: str, **kwargs: Any) -> StreamResponseLike:
        """GET ``url`` (SDK keyword arguments)."""
        return self._request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> StreamResponseLike:
        """POST ``url`` (SDK keyword arguments)."""
        return self._request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> StreamResponseLike:
        """PUT ``url`` (SDK keyword arguments)."""
        return self._request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> StreamResponseLike:
        """PATCH ``url`` (SDK keyword arguments)."""
        return self._request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> StreamResponseLike:
        """DELETE ``url`` (SDK keyword arguments)."""
        return self._request("DELETE", url, **kwargs)

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.close()

    def _request(
        self,
        method: str,
        url: str,
        *,
        data: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> StreamResponseLike:
        parts = urlsplit(url)
        target = parts.path + (f"?{urlencode(params, doseq=True)}" if params else "")
        body = data.encode() if isinstance(data, str) else data
        try:
            answer = self._pool.urlopen(
                method,
                target,
                body=body,
                headers=dict(headers or {}),
                timeout=self._pool.timeout if timeout is None else urllib3.Timeout(total=timeout),
                preload_content=True,
            )
        except MaxRetryError as exc:
            reason = exc.reason
            # A refused connection is a NewConnectionError, a ConnectTimeoutError subclass
            timed_out = isinstance(reason, Urllib3Timeout) and not isinstance(
                reason, NewConnectionError
            )
            raise StreamTransportError(type(reason).__name__, timed_out=timed_out) from None
        except Urllib3Timeout as exc:
            raise StreamTransportError(type(exc).__name__, timed_out=True) from None
        except HTTPError as exc:
            raise StreamTransportError(type(exc).__name__, timed_out=False) from None
        response = StreamResponseLike(
            answer.status, answer.data.decode("utf-8", errors="replace"), answer.headers
        )
        if self._on_response is not None:
            self._on_response(response)
        return response


def http_session(client: Any, on_response: Callable[..., None]) -> PooledSession | Any:
    """The session for one SDK ``client``: a :class:`PooledSession`, or, where the
    environment names a proxy, a ``requests`` session through it (proxies read once here:
    with ``trust_env`` on, requests scans every environment variable on each call).
    ``on_response`` sees each answer (its headers: Stream's rate-limit counts)."""
    proxies = requests.utils.get_environ_proxies(client.base_url)
    if not proxies:  # the SDK only calls the verbs and reads status, text and headers
        return PooledSession(client.base_url, timeout=client.timeout, on_response=on_response)
    session = requests.Session()
    session.proxies.update(proxies)
    session.trust_env = False
    adapter = requests.adapters.HTTPAdapter(max_retries=0, pool_maxsize=4)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.hooks["response"].append(on_response)
    return session
