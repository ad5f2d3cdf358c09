"""Stream's rules, applied to calls: ``errors`` (Stream-shaped errors and codes),
``validation`` (input limits), ``limits`` (rate limits and the API budget),
``faults`` (injected failures, drops, hangs, latency), ``filters`` (query filters
and sorts)."""

__all__: list[str] = []
