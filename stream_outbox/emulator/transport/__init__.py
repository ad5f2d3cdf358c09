"""How calls come in and are answered.

``server``: the HTTP/1.1 server on asyncio; ``core``: one API call from routing to
response (authentication, rate limits, faults, the handler), with the emulator's state
behind one lock; ``routes``: the route table and Stream's endpoint names; ``auth``:
api_key and JWT checks; ``websocket``: a client's ``/connect`` socket (wsproto);
``admin``: the ``/_emulator/...`` control operations, shared
with the Python API.
"""

__all__: list[str] = []
