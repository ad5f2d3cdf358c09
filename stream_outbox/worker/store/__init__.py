"""Shared state the processes coordinate through.

``repository``: the outbox and channel map in PostgreSQL (the only place their
rows are read or written); ``locks``: per-target locks in Redis;
``rate_budget``: Stream's per-endpoint budget shared by every worker, in Redis.
"""

__all__: list[str] = []
