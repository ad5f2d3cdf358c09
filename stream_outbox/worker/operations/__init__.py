"""The operators' tools on the outbox."""

__all__: list[str] = []
