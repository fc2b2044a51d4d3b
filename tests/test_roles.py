"""kambda/aws/roles.py: functions' execution-role credentials, minted and verified with one key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kambda.aws import roles

KEY = b"k" * 48
ROLE = "arn:aws:iam::000000000000:role/app"
FN = "arn:aws:lambda:us-east-1:000000000000:function:f"


def test_minted_credentials_verify_until_they_expire() -> None:
    s = roles.mint(KEY, ROLE, FN, now=1000.0, ttl_s=60)
    assert s.access_key.startswith("ASIA") and len(s.secret) == 40 and roles.is_role_token(s.token)
    assert roles.verify(KEY, s.access_key, s.token, now=1059.0) == s
    assert roles.verify(KEY, s.access_key, s.token, now=1060.0) is None  # expired
    assert roles.secret_of(KEY, s.token) == s.secret


def test_forged_or_foreign_tokens_are_refused() -> None:
    s = roles.mint(KEY, ROLE, FN, now=1000.0)
    other = roles.mint(b"o" * 48, ROLE, FN, now=1000.0)
    assert roles.verify(KEY, other.access_key, other.token, now=1001.0) is None  # another key's
    assert roles.verify(KEY, "ASIAOTHER", s.token, now=1001.0) is None  # another access key
    body, mac = s.token[len(roles.PREFIX):].split(".")
    tampered = roles.PREFIX + body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + mac
    assert roles.verify(KEY, s.access_key, tampered, now=1001.0) is None
    assert roles.verify(KEY, s.access_key, "kmb1.garbage", now=1001.0) is None


def test_a_role_grants_nothing_yet() -> None:
    assert not roles.permissions_of(ROLE).allows("lambda:ListFunctions", "*")
    assert not roles.permissions_of(ROLE).allows("lambda:InvokeFunction", FN)


def test_the_key_file(tmp_path: Path) -> None:
    roles.write_key(tmp_path / "roles.key")
    assert (tmp_path / "roles.key").stat().st_mode & 0o777 == 0o600
    assert len(roles.read_key(str(tmp_path / "roles.key"))) >= 32
    assert roles.read_key("") == b""
    (tmp_path / "short").write_text("abc")
    with pytest.raises(roles.RoleKeyError, match="shorter"):
        roles.read_key(str(tmp_path / "short"))
