"""What the emulator holds: ``store`` (users, channels, messages, async tasks)."""

__all__: list[str] = []
