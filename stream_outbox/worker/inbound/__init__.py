"""The inbound side: Stream's webhooks received into the inbox, applied to the app's tables.

``receiver`` (the ASGI app and its signature check), ``inbox_event`` (what an event says,
as the inbox stores it), ``inbox`` (the inbox's rows), ``runner`` (claims and applies
pending rows), ``events`` (pure: an event read for applying, own echoes, the conflict
rule), ``apply`` (one event applied to the app's tables), ``catch_up`` (``inbound sync``)
and ``process`` (``stream-outbox inbound``).
"""

from stream_outbox.worker.inbound.receiver import WEBHOOK_PATH, create_receiver, signature_valid

__all__ = ["WEBHOOK_PATH", "create_receiver", "signature_valid"]
