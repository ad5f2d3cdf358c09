"""App settings: ``GET /app`` (GetApp) and ``PATCH /app`` (UpdateApp), which configures the
app's webhooks (``event_hooks``, or the older ``webhook_url`` / ``webhook_events``)."""

from __future__ import annotations

from typing import Any

from stream_outbox.emulator.endpoints.call import Call
from stream_outbox.emulator.rules.hooks import legacy_hook, parse_event_hooks
from stream_outbox.emulator.state.store import channel_config

_HOOK_SETTINGS = ("event_hooks", "webhook_url", "webhook_events")


def get_app(call: Call) -> dict[str, Any]:
    """``GET /app`` (GetApp): the app, with the settings given through ``UpdateApp``."""
    app = {
        "name": "stream-emulator",
        "organization": "stream-emulator",
        "disable_auth_checks": False,
        "disable_permissions_checks": False,
        "enforce_unique_usernames": "no",
        "channel_configs": {t: channel_config(t) for t in sorted(call.channel_types)},
        "suspended": False,
        "event_hooks": [],
        "webhook_url": "",
        "webhook_events": [],
    }
    app.update(call.store.app_settings)
    return {"app": app}


def update_app(call: Call) -> dict[str, Any]:
    """``PATCH /app`` (UpdateApp): settings are stored; ``event_hooks`` replaces every hook
    (Stream: "Any previously existing hooks not included in event_hooks array will be
    deleted"), ``webhook_url`` sets the older single webhook."""
    settings = call.store.app_settings
    hooks = None
    if "event_hooks" in call.body:
        hooks = parse_event_hooks(call.body["event_hooks"])
    url = call.body.get("webhook_url", settings.get("webhook_url"))
    events = call.body.get("webhook_events", settings.get("webhook_events"))
    legacy = legacy_hook(url, events)  # validated before anything is stored
    settings.update(call.body)
    current = tuple(h for h in call.store.hooks if h is not call.store.legacy_hook)
    call.store.hooks = (hooks if hooks is not None else current) + ((legacy,) if legacy else ())
    call.store.legacy_hook = legacy
    return {}
