"""The handlers of Stream's REST endpoints, one resource a module: ``users`` and
``user_lifecycle``, ``channels``, ``messages``, ``imports`` (the Import API's four);
``call`` is what a handler is given."""

__all__: list[str] = []
