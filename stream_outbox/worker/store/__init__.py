"""Shared state the processes coordinate through.

``repository``: the outbox in PostgreSQL (the only place its rows are read or
written), with ``channel_map`` composed in; ``audit``: the audit table's entries;
``cutover``: the history export's watermark; ``locks``: per-target locks in Redis;
``rate_budget``: Stream's per-endpoint budget shared by every worker, in Redis.
"""

__all__: list[str] = []
