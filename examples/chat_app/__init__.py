"""The reference chat app and the stack it runs in: ``python -m examples.chat_app --browser``
(``./dev demo --browser``) starts the app, the emulator, the relay, the worker and the
inbound receiver, and prints the URLs to open as two users."""

from examples.chat_app.app import create_app

__all__ = ["create_app"]
