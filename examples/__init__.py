"""Examples of an application using stream-outbox (not part of the installed package)."""
