"""Short-lived credentials of a function's execution role, as each environment gets them.

As on AWS, an environment has ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and
``AWS_SESSION_TOKEN``, and what it may do through the gateway is what its role allows. The gateway
keeps no table of them: the session token says whose they are and until when, and is signed with
the platform's role key (HMAC-SHA256); the secret is derived from the token with the same key. So
the invoker that mints them and the gateway that checks them share only that key (a 0600 file in
the state directory), and a token that was changed, or has expired, is refused.

    token  = "kmb1." + base64url(json {"k": access key, "r": role ARN, "f": function ARN, "x": expiry})
             + "." + base64url(HMAC(key, "token:" + body))
    secret = base64url(HMAC(key, "secret:" + token))[:40]

What a role may do is its policies' say (iam/roles.py, the gateway's ``role_permissions``); a role
that does not exist grants nothing (:func:`permissions_of`, the default of a gateway without IAM).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from kambda.aws.policy import Permissions, Policy
from kambda.private import write_private

PREFIX = "kmb1."
#: How long minted credentials are good for (an environment is recycled well before).
DEFAULT_TTL_S = 12 * 3600
#: A role that grants nothing: no statement allows, so everything is denied.
NOTHING = Permissions((Policy(()),))


class RoleKeyError(ValueError):
    """The role key file cannot be used; the message names it."""


@dataclass(frozen=True)
class Session:
    access_key: str
    secret: str
    token: str
    role: str
    function: str
    expires: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: str, text: str) -> bytes:
    return hmac.new(key, f"{purpose}:{text}".encode(), hashlib.sha256).digest()


def secret_of(key: bytes, token: str) -> str:
    return _b64(_mac(key, "secret", token))[:40]


def mint(key: bytes, role: str, function: str, now: float, ttl_s: int = DEFAULT_TTL_S) -> Session:
    access_key = "ASIA" + secrets.token_hex(8).upper()
    expires = int(now) + ttl_s
    body = _b64(json.dumps({"k": access_key, "r": role, "f": function, "x": expires},
                           separators=(",", ":")).encode())
    token = f"{PREFIX}{body}.{_b64(_mac(key, 'token', body))}"
    return Session(access_key, secret_of(key, token), token, role, function, expires)


def is_role_token(token: str | None) -> bool:
    return bool(token) and token.startswith(PREFIX)  # type: ignore[union-attr]


def verify(key: bytes, access_key: str, token: str, now: float) -> Session | None:
    """The session a token stands for, or None when it is forged, another key's, or expired."""
    try:
        body, mac = token[len(PREFIX):].split(".", 1)
        if not hmac.compare_digest(_unb64(mac), _mac(key, "token", body)):
            return None
        claims = json.loads(_unb64(body))
    except (ValueError, TypeError):
        return None
    if not isinstance(claims, dict) or claims.get("k") != access_key:
        return None
    expires = claims.get("x")
    if not isinstance(expires, int) or expires <= now:
        return None
    return Session(access_key, secret_of(key, token), token, str(claims.get("r", "")), str(claims.get("f", "")),
                   expires)


def permissions_of(role: str) -> Permissions:
    """What a role may do when nothing knows its policies: nothing."""
    return NOTHING


def read_key(path: str) -> bytes:
    """The role key in a file; empty path: no key (functions get no credentials of their own)."""
    if not path:
        return b""
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise RoleKeyError(f"cannot read the role key {path}: {exc.strerror or exc}") from None
    if len(key) < 32:
        raise RoleKeyError(f"the role key in {path} is shorter than 32 bytes")
    return key


def write_key(path: Path) -> None:
    """A fresh role key, mode 0600 (kambda up makes one at every start: a restart rotates it)."""
    write_private(path, secrets.token_urlsafe(48))
