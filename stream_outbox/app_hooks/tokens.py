"""Stream user tokens, signed locally with the app's secret (no call to Stream)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt

__all__ = ["user_token"]


def user_token(api_secret: str, user_id: str, ttl: timedelta = timedelta(hours=1)) -> str:
    """A client token for ``user_id`` (HS256, Stream's ``user_id`` claim), valid for ``ttl``."""
    if not user_id:
        raise ValueError("user_id must not be empty")
    if ttl <= timedelta(0):
        raise ValueError("ttl must be positive")
    now = datetime.now(UTC)
    claims = {"user_id": user_id, "iat": int(now.timestamp()), "exp": int((now + ttl).timestamp())}
    return jwt.encode(claims, api_secret, algorithm="HS256")
