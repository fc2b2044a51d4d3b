"""Per-function NATS credentials on Kubernetes: minted by the controller, checked by NATS's auth callout.

A function pod shares its pod with the invoker that runs it, so whatever NATS credential the
invoker holds, the function's code can steal. On Kubernetes the invoker of a function version
therefore logs in with a credential that is good for that version only: a token the controller
mints (HMAC with the controller's callout key, naming function, version and expiry) and delivers
with the assignment. nats-server does not know such tokens: it asks the controller (auth callout,
``$SYS.REQ.USER.AUTH``), which verifies the token and answers with a user JWT, signed by the
account key it holds, whose permissions are that version's subjects alone:

- pull and ack its own sync consumer (``$JS.API.CONSUMER.MSG.NEXT.KAMBDA_SYNC.<consumer>``,
  ``$JS.ACK.KAMBDA_SYNC.<consumer>.>``), publish its logs (``kambda.logs.<function>``),
  reply to callers' inboxes;
- subscribe to its own inboxes (``_INBOX.f.<consumer>.>``) only.

Its code package it reads with a second token, also sent with the assignment, good for reading
that one object alone: its meta by direct get on the meta subject, its chunks through a consumer
whose name the token fixes and whose filter is that object's chunk subject (nats-server >= 2.9 puts
the filter in the create subject, so a permission can say it: kambda/bus/chunks.py).

So a stolen credential sees only its own function's requests, which its code sees anyway. The
static identities of kambda/bus/identities.py (listed as ``auth_users``) bypass the callout.

JWTs are nats-server's: ``ed25519-nkey`` signatures over ``header.payload`` (base64url, no padding).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import nkeys
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from kambda.bus import (
    CODE_BUCKET,
    SYNC_STREAM,
    assign_subject,
    chunks,
    consumer_name,
    logs_subject,
    stats_subject,
)

log = logging.getLogger(__name__)

AUTH_SUBJECT = "$SYS.REQ.USER.AUTH"
TOKEN_PREFIX = "kfn1."
#: How long a function credential is good for: a pod reconnecting later needs a fresh assignment.
DEFAULT_TTL_S = 24 * 3600
_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_account_seed() -> bytes:
    """A fresh account nkey seed (``SA...``): the key that signs the user JWTs the callout issues."""
    return bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_ACCOUNT))


def inbox_prefix(function: str, version: str) -> str:
    return f"_INBOX.f.{consumer_name(function, version)}"


def pod_user(invoker_id: str, key: str) -> str:
    return f"pod:{invoker_id}:{key}"


def pod_inbox(key: str) -> str:
    return f"_INBOX.pod.{key}"


def pod_permissions(invoker_id: str, key: str) -> dict[str, object]:
    """An invoker pod's own login: its assignments (on a subject with its random key, which no other
    pod knows), its stats, its inboxes."""
    return {"pub": {"allow": [stats_subject(invoker_id, key)]},
            "sub": {"allow": [assign_subject(invoker_id, key), f"{pod_inbox(key)}.>"]},
            "resp": {"max": 1, "ttl": 0}}


def function_permissions(function: str, version: str) -> dict[str, object]:
    """The NATS permissions of one function version's invoker (user JWT form)."""
    consumer = consumer_name(function, version)
    return {
        "pub": {"allow": [
            f"$JS.API.CONSUMER.MSG.NEXT.{SYNC_STREAM}.{consumer}", f"$JS.ACK.{SYNC_STREAM}.{consumer}.>",
            logs_subject(function), "_INBOX.gateway.>", "_INBOX.controller.>", "_INBOX.worker.>",
        ]},
        "sub": {"allow": [f"{inbox_prefix(function, version)}.>"]},
        "resp": {"max": 1, "ttl": 0},
    }


def code_inbox(reader: str) -> str:
    return f"_INBOX.code.{reader}"


def code_permissions(grant: CodeGrant) -> dict[str, object]:
    """The NATS permissions of a code read: one object's meta (a direct get of its meta subject) and
    its chunks through one consumer of the grant's name (kambda/bus/chunks.py), its inbox; nothing else."""
    stream = chunks.object_stream(CODE_BUCKET)
    return {
        "pub": {"allow": [f"$JS.API.DIRECT.GET.{stream}.{chunks.meta_subject(CODE_BUCKET, grant.sha256)}",
                          *chunks.read_permissions(stream, chunks.chunk_subject(CODE_BUCKET, grant.nuid),
                                                   grant.reader)]},
        "sub": {"allow": [f"{code_inbox(grant.reader)}.>"]},
    }


# --- the token a function's invoker presents ---------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    function: str
    version: str
    expires: int


@dataclass(frozen=True)
class CodeGrant:
    """A read of one code package: its name (sha256 hex), the nuid its chunks are stored under, and
    the one consumer name the read may use (fresh per grant: two pods never share a consumer)."""

    sha256: str
    nuid: str
    reader: str
    expires: int


def _sign(key: bytes, claims: dict[str, object]) -> str:
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{TOKEN_PREFIX}{body}.{_b64(hmac.new(key, body.encode(), hashlib.sha256).digest())}"


def mint(key: bytes, function: str, version: str, now: float, ttl_s: int = DEFAULT_TTL_S) -> str:
    return _sign(key, {"f": function, "v": version, "x": int(now) + ttl_s})


def mint_code(key: bytes, sha256_hex: str, nuid: str, now: float, ttl_s: int = DEFAULT_TTL_S) -> str:
    return _sign(key, {"c": sha256_hex, "n": nuid, "r": chunks.consumer_name(), "x": int(now) + ttl_s})


def _claims(key: bytes, token: str, now: float) -> dict[str, object] | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    try:
        body, mac = token[len(TOKEN_PREFIX):].split(".", 1)
        if not hmac.compare_digest(_unb64(mac), hmac.new(key, body.encode(), hashlib.sha256).digest()):
            return None
        claims = json.loads(_unb64(body))
    except (ValueError, TypeError):
        return None
    if not isinstance(claims, dict) or not isinstance(claims.get("x"), int) or claims["x"] <= now:
        return None
    return claims


def verify(key: bytes, token: str, now: float) -> Grant | None:
    claims = _claims(key, token, now)
    if claims is None:
        return None
    function, version = claims.get("f"), claims.get("v")
    if not (isinstance(function, str) and isinstance(version, str)):
        return None
    return Grant(function, version, int(claims["x"]))  # type: ignore[call-overload]


def verify_code(key: bytes, token: str, now: float) -> CodeGrant | None:
    claims = _claims(key, token, now)
    if claims is None:
        return None
    grant = _code_grant(claims)
    valid = grant is not None and all(subject_safe(p) for p in (grant.sha256, grant.nuid, grant.reader))
    return grant if valid else None


def _code_grant(claims: dict[str, object]) -> CodeGrant | None:
    sha, nuid, reader, expires = claims.get("c"), claims.get("n"), claims.get("r"), claims.get("x")
    if not (isinstance(sha, str) and isinstance(nuid, str) and isinstance(reader, str) and isinstance(expires, int)):
        return None
    return CodeGrant(sha, nuid, reader, expires)


def code_grant_of(token: str) -> CodeGrant | None:
    """What a code token says (unverified: its holder needs the reader's name; the callout verifies)."""
    try:
        claims = json.loads(_unb64(token[len(TOKEN_PREFIX):].split(".", 1)[0]))
    except (ValueError, TypeError):
        return None
    return _code_grant(claims) if isinstance(claims, dict) else None


def subject_safe(token: str) -> bool:
    """A value that can stand as one subject token (no wildcard, no separator)."""
    return bool(token) and all(c.isalnum() or c in "-_" for c in token)


# --- JWTs ----------------------------------------------------------------------------------------------


def encode_jwt(claims: dict[str, object], signer: nkeys.KeyPair) -> str:
    claims = {**claims, "jti": _b64(secrets.token_bytes(16))}
    signing_input = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(signer.sign(signing_input.encode()))}"


def decode_request(token: str) -> dict[str, object]:
    """The claims of the server's authorization request, its signature checked against its issuer
    (the server's own nkey: the request says which; what matters is the answer we sign)."""
    header, payload, signature = token.split(".")
    claims = json.loads(_unb64(payload))
    if not isinstance(claims, dict):
        raise ValueError("not a claims object")
    try:
        VerifyKey(_decode_public(str(claims.get("iss", "")))).verify(f"{header}.{payload}".encode(),
                                                                     _unb64(signature))
    except BadSignatureError:
        raise ValueError("the request's signature is not its issuer's") from None
    if not isinstance(claims, dict):
        raise ValueError("not a claims object")
    return claims


def _decode_public(key: str) -> bytes:
    raw = base64.b32decode(key + "=" * (-len(key) % 8))
    return raw[1:-2]  # prefix byte, 32 bytes of key, CRC16


def token_key(account_seed: bytes) -> bytes:
    """The key of function tokens, derived from the account seed (one secret to keep, not two)."""
    return hmac.new(account_seed, b"kambda function nats token", hashlib.sha256).digest()


class Callout:
    """Answers nats-server's auth callout requests with function-scoped user JWTs."""

    def __init__(self, nc: NATS, account_seed: bytes, token_key: bytes,
                 clock: Callable[[], float] = time.time, pod_password: str = "") -> None:
        """``pod_password``: what invoker pods present as ``pod:<id>:<key>`` (their Secret's); empty: none admitted."""
        self._nc = nc
        self._pod_password = pod_password
        self._account = nkeys.from_seed(bytearray(account_seed))
        self._issuer = self._account.public_key.decode()
        self._key = token_key
        self._clock = clock
        self._sub: object | None = None

    @property
    def issuer(self) -> str:
        """The account public key nats-server's ``auth_callout { issuer }`` names."""
        return self._issuer

    def mint(self, function: str, version: str) -> str:
        return mint(self._key, function, version, self._clock())

    def mint_code(self, sha256_hex: str, nuid: str) -> str:
        return mint_code(self._key, sha256_hex, nuid, self._clock())

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(AUTH_SUBJECT, cb=self._on_request)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()  # type: ignore[attr-defined]

    def _pod_of(self, user: str, password: str) -> tuple[str, str] | None:
        """(invoker id, key) of a pod's login ``pod:<id>:<key>`` with the pods' password."""
        parts = user.split(":")
        if len(parts) != 3 or parts[0] != "pod" or not self._pod_password:
            return None
        if not hmac.compare_digest(password.encode(), self._pod_password.encode()):
            return None
        invoker_id, key = parts[1], parts[2]
        valid = all(p and all(c.isalnum() or c in "-_" for c in p) for p in (invoker_id, key))
        return (invoker_id, key) if valid and len(key) >= 16 else None

    async def _on_request(self, msg: Msg) -> None:
        try:
            request = decode_request(msg.data.decode())
        except (ValueError, nkeys.NkeysError, UnicodeDecodeError) as exc:
            log.warning("auth callout: a request that does not decode: %s", exc)
            return
        nats_claims = request.get("nats") or {}
        assert isinstance(nats_claims, dict)
        user_nkey = str(nats_claims.get("user_nkey", ""))
        server_id = str((nats_claims.get("server_id") or {}).get("id", ""))
        opts = nats_claims.get("connect_opts") or {}
        token = str(opts.get("auth_token") or opts.get("pass") or "")
        now = self._clock()
        grant = verify(self._key, token, now)
        code = verify_code(self._key, token, now)
        pod = self._pod_of(str(opts.get("user") or ""), token)
        response: dict[str, object] = {"type": "authorization_response", "version": 2}
        if grant is not None:
            name, permissions, expires = (f"fn:{grant.function}:{grant.version}",
                                          function_permissions(grant.function, grant.version), grant.expires)
        elif code is not None:
            name, permissions, expires = f"code:{code.sha256[:16]}:{code.reader}", code_permissions(code), code.expires
        elif pod is not None:
            name, permissions, expires = pod_user(*pod), pod_permissions(*pod), int(now) + DEFAULT_TTL_S
        else:
            response["error"] = "not a kambda credential, or expired"
        if "error" not in response:
            user = {"sub": user_nkey, "iss": self._issuer, "aud": "$G", "iat": int(now), "exp": expires,
                    "name": name, "nats": {**permissions, "subs": -1, "data": -1, "payload": -1, "type": "user",
                                           "version": 2}}
            response["jwt"] = encode_jwt(user, self._account)
        answer = {"sub": user_nkey, "iss": self._issuer, "aud": server_id, "iat": int(now), "nats": response}
        await self._nc.publish(msg.reply, encode_jwt(answer, self._account).encode())


if __name__ == "__main__":
    # A fresh account seed for the chart's per-function credentials, and the issuer nats-server names.
    new = new_account_seed()
    print(f"seed:   {new.decode()}\nissuer: {nkeys.from_seed(bytearray(new)).public_key.decode()}")
