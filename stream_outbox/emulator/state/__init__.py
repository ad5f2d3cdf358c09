"""What the emulator holds: ``store`` (users, channels, messages, async tasks; the
clocks), ``request_log`` (every call counted, and when it was answered) and ``hub``
(open WebSocket connections and the channels they watch)."""

__all__: list[str] = []
