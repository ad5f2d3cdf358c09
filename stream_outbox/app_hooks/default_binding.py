"""The binding a caller gave, else the reference application's (loaded only when wanted)."""

from __future__ import annotations

from stream_outbox.app_hooks.binding import Binding

__all__ = ["binding_or_reference"]


def binding_or_reference(binding: Binding | None) -> Binding:
    """``binding``, or the reference application's when it is None.

    The reference app's models are imported here, on first use: an application
    that hands its own binding never defines them.
    """
    if binding is not None:
        return binding
    from stream_outbox.app_hooks.reference import REFERENCE_BINDING

    return REFERENCE_BINDING
