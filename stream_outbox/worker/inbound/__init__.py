"""The inbound side: Stream's webhooks received into the inbox, applied to the app's tables.

``receiver`` (the ASGI app and its signature check), ``events`` (what an event says),
``inbox`` (the inbox's rows), ``runner`` (claims and applies pending rows), ``catch_up``
(``inbound sync``) and ``process`` (``stream-outbox inbound``).
"""

from stream_outbox.worker.inbound.receiver import WEBHOOK_PATH, create_receiver, signature_valid

__all__ = ["WEBHOOK_PATH", "create_receiver", "signature_valid"]
