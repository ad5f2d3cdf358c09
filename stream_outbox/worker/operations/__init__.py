"""The operators' tools on the outbox, one concern a module, for the command line and the dashboard.

``rows`` (filters, a page of rows, one row, failed rows by cause), ``replay``, ``purge``,
``stats`` and ``series`` (the figures now and over time), ``error_groups`` (pure: a
failure's cause), ``times`` (times and ages as operators write them), ``resync`` and
``backfill`` (an outbox row for every user and conversation, resumable), ``triggers``
(the capture triggers installed and dropped) and ``migrate`` (the outbox schema).
Bad input raises :class:`~stream_outbox.worker.errors.AdminError` before anything
changes; every change writes its audit entry (:mod:`stream_outbox.worker.store.audit`).
"""

__all__: list[str] = []
