"""Stream's Import API behind its endpoints: ``uploads`` (the upload URL a file is PUT
to), ``tasks`` (uploads and import tasks through their states), ``work`` (the analysis
and apply jobs), ``file`` (reading and analysing an import file), ``rules`` (the
per-item rules), ``apply`` (writing a validated file to the store)."""

__all__: list[str] = []
