"""The handlers of Stream's REST endpoints, one resource a module, and ``call`` (what
a handler is given)."""

__all__: list[str] = []
