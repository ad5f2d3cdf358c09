"""Authentication as Stream checks it: api_key, auth type and an HS256 JWT, either a server
token (``{"server": true}``) or a user token (``{"user_id": ...}``, client-side)."""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm

from stream_outbox.emulator.rules.errors import (
    ACCESS_KEY_ERROR,
    AUTHENTICATION_ERROR,
    TOKEN_BEFORE_ISSUED_AT,
    TOKEN_EXPIRED,
    TOKEN_NOT_VALID_YET,
    TOKEN_SIGNATURE_INVALID,
    StreamError,
)

_CACHE_LIMIT = 4096
_TIME_CLAIMS = ("exp", "nbf", "iat")


def _unauthorized(code: int, detail: str) -> StreamError:
    return StreamError(401, code, detail)


def _actor(claims: dict[str, Any]) -> str | None:
    """None for a server token, the user id of a user token."""
    if claims.get("server") is True:
        return None
    user_id = claims.get("user_id")
    if not isinstance(user_id, str) or not user_id:
        raise _unauthorized(
            AUTHENTICATION_ERROR, "JWTAuth error: token has neither server nor user_id claims"
        )
    return user_id


class Authenticator:
    """Checks the ``api_key`` query parameter, ``stream-auth-type`` and the JWT.

    The signature is checked with PyJWT's HMAC-SHA256 primitive and the claims
    with ``jwt.decode``; tokens without time claims (the SDK's ``{"server": true}``
    token, ``/chat/token``'s user tokens) are cached once verified, since a client sends
    the same token every call.
    """

    def __init__(self, api_key: str, api_secret: str) -> None:
        self.api_key = api_key
        self._secret = api_secret.encode()
        self._hmac = HMACAlgorithm(HMACAlgorithm.SHA256)
        self._verified: dict[str, str | None] = {}

    def check(self, query: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
        """The user acting (a user token), or None for a server-side call; ``StreamError``
        (401) unless the request is authenticated."""
        api_key = query.get("api_key")
        if not api_key:
            raise _unauthorized(ACCESS_KEY_ERROR, "api_key is required")
        if api_key != self.api_key:
            raise _unauthorized(ACCESS_KEY_ERROR, "api_key is invalid")
        if headers.get("stream-auth-type") != "jwt":
            raise _unauthorized(AUTHENTICATION_ERROR, "stream-auth-type missing or invalid")
        token = headers.get("authorization", "")
        if token.startswith("Bearer "):
            token = token[7:]
        if not token:
            raise _unauthorized(AUTHENTICATION_ERROR, "JWTAuth error: token is missing")
        if token in self._verified:
            return self._verified[token]
        claims = self._verify(token)
        actor = _actor(claims)
        if not any(claim in claims for claim in _TIME_CLAIMS):
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[token] = actor
        return actor

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            signing_input, _, signature = token.rpartition(".")
            raw_signature = jwt.utils.base64url_decode(signature.encode())
        except (jwt.DecodeError, binascii.Error, ValueError) as exc:
            raise _unauthorized(AUTHENTICATION_ERROR, f"JWTAuth error: {exc}") from exc
        if header.get("alg") != "HS256" or not self._hmac.verify(
            signing_input.encode(), self._secret, raw_signature
        ):
            raise _unauthorized(
                TOKEN_SIGNATURE_INVALID,
                "JWTAuth error: signature is not valid. Make sure the token is created "
                f'using the secret for API key "{self.api_key}"',
            )
        return self._claims(token)

    @staticmethod
    def _claims(token: str) -> dict[str, Any]:
        options: Any = {
            "verify_signature": False,
            "verify_exp": True,
            "verify_nbf": True,
            "verify_iat": True,
        }
        try:
            claims: dict[str, Any] = jwt.decode(token, options=options)
        except jwt.ExpiredSignatureError as exc:
            raise _unauthorized(TOKEN_EXPIRED, "JWTAuth error: token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise _unauthorized(
                TOKEN_NOT_VALID_YET, "JWTAuth error: token is not valid yet"
            ) from exc
        except jwt.InvalidIssuedAtError as exc:
            raise _unauthorized(
                TOKEN_BEFORE_ISSUED_AT, "JWTAuth error: token used before issue at (iat)"
            ) from exc
        except jwt.InvalidTokenError as exc:
            raise _unauthorized(AUTHENTICATION_ERROR, f"JWTAuth error: {exc}") from exc
        return claims
