"""Stream's Import API behind its endpoints: ``file`` (reading and analysing an import
file), ``rules`` (the per-item rules), ``apply`` (writing a validated file to the
store), ``work`` (the analysis and apply jobs), ``tasks`` (uploads and import tasks
through their states)."""

__all__: list[str] = []
