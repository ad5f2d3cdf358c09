"""What the emulator holds: ``store`` (users, channels, messages, async tasks; the
clocks) and ``request_log`` (every call counted, and when it was answered)."""

__all__: list[str] = []
