"""The app's event hooks, as ``update_app_settings`` configures them, and which event goes where.

Stream's docs (``docs/webhooks/webhooks_overview/webhooks_overview.md`` in
GetStream/stream-chat-python): ``event_hooks`` is a list of ``{"enabled", "hook_type",
"webhook_url", "event_types"}``; an empty ``event_types`` means every event, and hooks
left out of a new ``event_hooks`` are deleted. The older settings ``webhook_url`` (and
``webhook_events``) are one more webhook. Only ``webhook`` hooks are delivered; SQS, SNS
and pending-message hooks are stored, not delivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stream_outbox.emulator.rules.errors import input_error

HOOK_TYPES = frozenset({"webhook", "sqs", "sns", "pending_message"})


@dataclass(frozen=True)
class Hook:
    """One configured hook."""

    hook_type: str
    url: str
    event_types: frozenset[str]
    enabled: bool = True

    def wants(self, event_type: str) -> bool:
        """Whether this hook delivers ``event_type`` over HTTP."""
        if not self.enabled or self.hook_type != "webhook" or not self.url:
            return False
        return not self.event_types or event_type in self.event_types


def _event_types(raw: Any, field: str) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise input_error(f"{field} must be a list of event types")
    return frozenset(raw)


def parse_event_hooks(raw: Any) -> tuple[Hook, ...]:
    """Validate ``event_hooks`` (a list of hook objects) into hooks."""
    if not isinstance(raw, list):
        raise input_error("event_hooks must be a list")
    hooks = []
    for n, item in enumerate(raw):
        if not isinstance(item, dict):
            raise input_error(f"event_hooks[{n}] must be an object")
        hook_type = item.get("hook_type", "webhook")
        if hook_type not in HOOK_TYPES:
            raise input_error(f"event_hooks[{n}].hook_type must be one of {sorted(HOOK_TYPES)}")
        url = item.get("webhook_url") or ""
        if not isinstance(url, str):
            raise input_error(f"event_hooks[{n}].webhook_url must be a string")
        enabled = item.get("enabled", True)
        if hook_type == "webhook" and enabled and not url.startswith(("http://", "https://")):
            raise input_error(f"event_hooks[{n}].webhook_url must be an http(s) URL")
        types = _event_types(item.get("event_types"), f"event_hooks[{n}].event_types")
        hooks.append(Hook(hook_type, url, types, bool(enabled)))
    return tuple(hooks)


def legacy_hook(url: Any, events: Any) -> Hook | None:
    """The hook of the older ``webhook_url`` / ``webhook_events`` settings (None: unset)."""
    if url in (None, ""):
        return None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise input_error("webhook_url must be an http(s) URL")
    return Hook("webhook", url, _event_types(events, "webhook_events"))
