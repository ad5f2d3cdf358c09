"""Verification: does Stream hold what the database says?"""

__all__: list[str] = []
