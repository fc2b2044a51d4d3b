"""Reading settings from an environment mapping, with errors that name the key, value and range.

Each process has one frozen settings dataclass with ``from_env(environ)``; ``main`` passes
``os.environ`` and tests pass plain dicts. The helpers here are what those constructors share.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "000000000000"
#: The first uid of sandboxed functions, and how many there are (invoker/sandbox.py).
SANDBOX_UID_BASE = 200_000
SANDBOX_UID_COUNT = 65_536


class Site(Protocol):
    """Where the platform answers, as the products that name endpoints need it (function URLs, HTTP
    APIs); the gateway's settings are one."""

    @property
    def region(self) -> str: ...
    @property
    def account(self) -> str: ...
    #: Function URLs are also served on <url-id>.lambda-url.<region>.<url_domain>.
    @property
    def url_domain(self) -> str: ...
    #: Requests whose Host is this name are HTTP API traffic with the full path.
    @property
    def http_host(self) -> str: ...


class SettingsError(ValueError):
    """A setting has a value outside what it accepts; the message names key, value and range."""


def env_str(environ: Mapping[str, str], key: str, default: str) -> str:
    value = environ.get(key, "")
    return value if value != "" else default


def env_int(environ: Mapping[str, str], key: str, default: int, lo: int, hi: int) -> int:
    raw = environ.get(key, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not an integer (expected {lo}..{hi})") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{key}={value} is out of range (expected {lo}..{hi})")
    return value


def env_float(environ: Mapping[str, str], key: str, default: float, lo: float, hi: float) -> float:
    raw = environ.get(key, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not a number (expected {lo}..{hi})") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{key}={value} is out of range (expected {lo}..{hi})")
    return value


def env_bool(environ: Mapping[str, str], key: str, default: bool) -> bool:
    raw = environ.get(key, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{key}={raw!r} is not a boolean (expected true or false)")


def state_dir(environ: Mapping[str, str]) -> Path:
    """The state directory: KAMBDA_STATE_DIR, default ~/.kambda."""
    return Path(env_str(environ, "KAMBDA_STATE_DIR", os.path.expanduser("~/.kambda")))


@functools.lru_cache(maxsize=1024)
def is_loopback(host: str | None) -> bool:
    """Whether an address (or ``localhost``) is this machine's loopback, IPv4-mapped IPv6 included."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def sandbox_enabled(environ: Mapping[str, str], is_root: bool) -> bool:
    """KAMBDA_SANDBOX: functions are sandboxed when the platform runs as root (the default) unless false."""
    return env_bool(environ, "KAMBDA_SANDBOX", True) and is_root


def sandbox_uids(environ: Mapping[str, str], is_root: bool) -> range | None:
    """The uids sandboxed functions run as (KAMBDA_SANDBOX_UID_BASE, _UID_COUNT; invoker/sandbox.py),
    or None when functions are not sandboxed (they then run as the platform's own user)."""
    if not sandbox_enabled(environ, is_root):
        return None
    base = env_int(environ, "KAMBDA_SANDBOX_UID_BASE", SANDBOX_UID_BASE, 1000, 2**31 - 2**17)
    return range(base, base + env_int(environ, "KAMBDA_SANDBOX_UID_COUNT", SANDBOX_UID_COUNT, 16, 2**17))


def bind_refusal(host: str, credentials_file: str, insecure: bool) -> str | None:
    """Why the gateway must not listen on ``host`` as configured, or None when it may.

    With no credentials, an address other than loopback would let anyone who reaches it deploy and
    run code; that takes an explicit ``insecure``.
    """
    if credentials_file or insecure or is_loopback(host):
        return None
    return (f"refusing to listen on {host} with no credentials: anyone who can reach it could deploy and run "
            "code. Configure credentials (KAMBDA_CREDENTIALS_FILE, `kambda up --credentials FILE`), or accept "
            "that with KAMBDA_INSECURE=true (`kambda up --insecure`)")
