"""Scalars on the wire: the text and JSON forms of integers, floats, booleans, timestamps and blobs.

The rules are botocore's, since botocore (and every SDK generated from the same models) is what sends and reads
them: booleans are ``true``/``false``; floats may be ``NaN``/``Infinity``/``-Infinity``; blobs are base64 outside a
raw payload; a timestamp is written in the member's ``timestampFormat`` trait, else in the place's default
(``unixTimestamp`` in a JSON body, ``rfc822`` in a header, ``iso8601`` in a query string, a URI, XML or a Query
form). On input a timestamp is read in whatever of the three forms it comes in, as botocore's parsers do, since
clients are not consistent. Every failure is :class:`Malformed`; the protocol turns it into its own error.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import email.utils
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from kambda.aws.protocol.faults import Malformed

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ISO8601 = "iso8601"
RFC822 = "rfc822"
UNIX = "unixtimestamp"


def to_int(text: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise Malformed(f"'{text}' is not an integer") from None


def to_float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise Malformed(f"'{text}' is not a number") from None


def to_bool(text: str) -> bool:
    lowered = text.lower() if isinstance(text, str) else text
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise Malformed(f"'{text}' is not a boolean (true or false)")


def b64decode(text: str | bytes) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise Malformed("invalid base64") from None


def b64encode(value: bytes | bytearray | str) -> str:
    if isinstance(value, str):
        value = value.encode("utf-8")
    return base64.b64encode(value).decode("ascii")


def from_epoch(seconds: float) -> datetime:
    if isinstance(seconds, bool) or not math.isfinite(seconds):
        raise Malformed(f"'{seconds}' is not a timestamp")
    try:
        return EPOCH + timedelta(microseconds=round(seconds * 1_000_000))
    except OverflowError:
        raise Malformed(f"'{seconds}' is not a timestamp") from None


def to_timestamp(value: Any) -> datetime:
    """Epoch seconds (number or numeric text), ISO 8601 or RFC 822, to an aware UTC datetime."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return from_epoch(value)
    if not isinstance(value, str) or not value:
        raise Malformed(f"'{value}' is not a timestamp")
    head = value[0]
    if head.isdigit() or head in "-.":
        if "-" not in value[1:] and ":" not in value:
            try:
                return from_epoch(float(value))
            except ValueError:
                raise Malformed(f"'{value}' is not a timestamp") from None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise Malformed(f"'{value}' is not an ISO 8601 timestamp") from None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        raise Malformed(f"'{value}' is not a timestamp") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _aware(value: datetime | float | int | str) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return to_timestamp(value)


def format_timestamp(value: datetime | float | int | str, fmt: str) -> str | int | float:
    """The wire form of a timestamp in ``fmt`` (a model's timestampFormat, any case)."""
    moment = _aware(value)
    fmt = fmt.lower()
    if fmt == UNIX:
        seconds = calendar.timegm(moment.timetuple())
        if moment.microsecond:
            return (seconds * 1_000_000 + moment.microsecond) / 1_000_000
        return seconds
    if fmt == RFC822:
        return email.utils.formatdate(calendar.timegm(moment.timetuple()), usegmt=True)
    if moment.microsecond % 1000:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_float(value: float) -> str | float:
    """JSON has no NaN or infinities: AWS writes them as strings."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def float_text(value: float) -> str:
    return str(format_float(float(value)))


def scalar_from_text(type_name: str, text: str, timestamp_format: str | None = None) -> Any:
    """A scalar read from a header, a query string, a URI label, XML text or a Query form."""
    if type_name == "string":
        return text
    if type_name in ("integer", "long", "short", "byte"):
        return to_int(text)
    if type_name in ("float", "double"):
        return to_float(text)
    if type_name == "boolean":
        return to_bool(text)
    if type_name == "timestamp":
        return to_timestamp(text)
    if type_name == "blob":
        return b64decode(text)
    return text


def scalar_to_text(type_name: str, value: Any, timestamp_format: str) -> str:
    """The inverse of :func:`scalar_from_text`; ``timestamp_format`` is the place's default or the trait."""
    if type_name == "boolean":
        return "true" if value else "false"
    if type_name == "timestamp":
        return str(format_timestamp(value, timestamp_format))
    if type_name in ("float", "double"):
        return float_text(value)
    if type_name == "blob":
        return b64encode(value)
    return str(value)
