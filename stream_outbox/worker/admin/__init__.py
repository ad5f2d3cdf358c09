"""The operators' tools: outbox rows (list, replay, purge, stats), resync, backfill,
verify and compare, schema migration, and the ``stream-outbox admin`` command line."""

__all__: list[str] = []
