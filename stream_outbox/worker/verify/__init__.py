"""Verification: does Stream hold what the database says?

``compare`` is the pure comparison of two states and ``history`` its part for a
channel's messages and reads; ``readers`` reads the two sides (the database's, and
Stream's or the emulator's); ``target`` shows one target in both places.
"""

__all__: list[str] = []
