"""Moving work: the relay drains the outbox into Dramatiq jobs, the actor runs them.

``relay`` claims rows and enqueues jobs (``jobs`` groups them), ``broker`` and
``wakeup`` carry them on Redis, ``actor`` runs one under its targets' locks and
settles its rows (``retry`` decides how long a failure waits), ``processes`` runs
the relay and worker processes.
"""

__all__: list[str] = []
