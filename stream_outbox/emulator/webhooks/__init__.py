"""The app's webhooks, sent as Stream sends them: ``delivery`` (one event to one URL: its
signature, headers and retry policy), ``faults`` (drop, delay, duplicate, reorder),
``sender`` (the background threads that deliver them)."""

__all__: list[str] = []
