"""Client-side calls as the browser makes them: a user token from ``/chat/token``
(``StreamChat.create_token``), the headers and query of stream-chat-js
(``_enrichAxiosOptions`` in ``src/client.ts``: ``Authorization`` the bare token,
``stream-auth-type: jwt``, ``X-Stream-Client``, ``x-client-request-id``; ``api_key`` and
``user_id`` in the query) and its paths (``src/channel.ts``: ``/channels/{type}/{id}/message``,
``/query``, ``/read``; ``src/client.ts``: ``POST /messages/{id}`` to update,
``PUT /messages/{id}`` to update partially, ``DELETE /messages/{id}``, ``POST /channels``)."""

from __future__ import annotations

import uuid
from typing import Any

import requests

JS_CLIENT = "stream-chat-react-13.0.0-stream-chat-javascript-client-browser-9.0.0"


class UserCallError(Exception):
    """A refused call: Stream's status and code."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body.get('message')}")
        self.status = status
        self.code = body.get("code")
        self.body = body


class UserClient:
    """One user's client-side calls against a Stream (emulator) base URL."""

    def __init__(
        self, base_url: str, api_key: str, user_id: str, token: str, session: requests.Session
    ) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.user_id = user_id
        self.token = token
        self.session = session
        self.connection_id: str | None = None  # the user's WebSocket, once it has one

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any
    ) -> dict[str, Any]:
        """One call; the answer's JSON, or ``UserCallError``."""
        response = self.session.request(
            method,
            f"{self.base_url}/{path.lstrip('/')}",
            params={
                "user_id": self.user_id,
                "api_key": self.api_key,
                **({"connection_id": self.connection_id} if self.connection_id else {}),
                **params,
            },
            headers={
                "Authorization": self.token,
                "stream-auth-type": "jwt",
                "X-Stream-Client": JS_CLIENT,
                "x-client-request-id": str(uuid.uuid4()),
            },
            json=body,
            timeout=10,
        )
        payload: dict[str, Any] = response.json()
        if response.status_code >= 400:
            raise UserCallError(response.status_code, payload)
        return payload

    def send_message(self, cid: str, message: dict[str, Any]) -> dict[str, Any]:
        """``channel.sendMessage``."""
        return self.call("POST", f"channels/{cid.replace(':', '/')}/message", {"message": message})

    def update_message(self, message: dict[str, Any]) -> dict[str, Any]:
        """``client.updateMessage`` (the whole message)."""
        return self.call("POST", f"messages/{message['id']}", {"message": message})

    def partial_update_message(self, message_id: str, set_: dict[str, Any]) -> dict[str, Any]:
        """``client.partialUpdateMessage``."""
        return self.call("PUT", f"messages/{message_id}", {"set": set_})

    def delete_message(self, message_id: str, hard: bool = False) -> dict[str, Any]:
        """``client.deleteMessage``."""
        params = {"hard": "true"} if hard else {}
        return self.call("DELETE", f"messages/{message_id}", **params)

    def mark_read(self, cid: str, message_id: str | None = None) -> dict[str, Any]:
        """``channel.markRead``."""
        body = {"message_id": message_id} if message_id else {}
        return self.call("POST", f"channels/{cid.replace(':', '/')}/read", body)

    def watch(self, cid: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """``channel.watch()`` (a query with ``watch`` and ``state``)."""
        body: dict[str, Any] = {"state": True, "watch": True, "presence": False}
        if data:
            body["data"] = data
        return self.call("POST", f"channels/{cid.replace(':', '/')}/query", body)

    def stop_watching(self, cid: str) -> dict[str, Any]:
        """``channel.stopWatching()``."""
        return self.call("POST", f"channels/{cid.replace(':', '/')}/stop-watching", {})

    def send_event(self, cid: str, event: dict[str, Any]) -> dict[str, Any]:
        """``channel.sendEvent`` (``keystroke()`` sends ``typing.start``)."""
        return self.call("POST", f"channels/{cid.replace(':', '/')}/event", {"event": event})

    def query_channels(self, filter_conditions: dict[str, Any]) -> dict[str, Any]:
        """``client.queryChannels``."""
        body = {"filter_conditions": filter_conditions, "state": True, "watch": True}
        return self.call("POST", "channels", body)
