"""Bearer tokens for the emulated ARM: JWTs it signs itself and checks on every call.

A token is shaped like an Entra ID access token for ARM (``aud`` ``https://management.azure.com/``,
``iss`` ``https://sts.windows.net/<tenant>/``, ``exp``), signed with HMAC-SHA256 under a key only this
emulator holds. Looking like a JWT matters: the product's redaction recognises JWTs, so a test proves a
token never reaches a log. :meth:`TokenAuthority.check` answers with ARM's own 401 codes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid

from testbed.emulator import arm_errors
from testbed.emulator.arm_errors import ArmError

AUDIENCE = "https://management.azure.com/"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenAuthority:
    """Mints and checks the emulator's bearer tokens."""

    def __init__(self, tenant_id: str | None = None) -> None:
        """A fresh signing key; ``tenant_id`` is only written into the tokens' ``iss``/``tid``."""
        self._key = os.urandom(32)
        self.tenant_id = tenant_id or str(uuid.uuid4())

    def mint(self, lifetime_seconds: int = 24 * 3600) -> str:
        """A token valid for ``lifetime_seconds`` from now (negative: already expired, for tests)."""
        now = int(time.time())
        header = {"typ": "JWT", "alg": "HS256"}
        claims = {
            "aud": AUDIENCE,
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "tid": self.tenant_id,
            "oid": str(uuid.uuid4()),
            "iat": now,
            "nbf": now - 300,
            "exp": now + lifetime_seconds,
        }
        signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
        signature = hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256).digest()
        return signing_input + "." + _b64(signature)

    def check(self, authorization: str | None) -> None:
        """Accept a valid ``Authorization: Bearer <token>`` or raise the :class:`ArmError` ARM would."""
        if authorization is None or not authorization.strip():
            raise arm_errors.missing_authorization()
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise arm_errors.malformed_authorization()
        claims = self._verified_claims(token)
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= time.time():
            raise arm_errors.expired_token()

    def _verified_claims(self, token: str) -> dict[str, object]:
        parts = token.split(".")
        if len(parts) != 3:
            raise arm_errors.invalid_token()
        signing_input = (parts[0] + "." + parts[1]).encode("ascii", "replace")
        expected = hmac.new(self._key, signing_input, hashlib.sha256).digest()
        try:
            signature = _unb64(parts[2])
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, UnicodeDecodeError):
            raise arm_errors.invalid_token() from None
        if not hmac.compare_digest(signature, expected) or not isinstance(claims, dict):
            raise arm_errors.invalid_token()
        if claims.get("aud") != AUDIENCE:
            raise ArmError(
                401,
                "InvalidAuthenticationTokenAudience",
                f"The access token has been obtained for wrong audience or resource '{claims.get('aud')}'.",
            )
        return claims
