"""Going live through Stream's Import API: the history up to a watermark as import files.

``export`` writes the database's users, channels, members and messages as Stream's
import files, ``files`` keeps those files and the state that makes an export resumable,
``upload`` puts each file through the Import API and ``follow`` watches its import task
to its end. (The other way a history reaches Stream, copied message by message through
SendMessage, is the reconcile's: :mod:`stream_outbox.worker.sync.history`.)
"""

__all__: list[str] = []
