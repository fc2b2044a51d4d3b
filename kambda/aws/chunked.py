"""S3's streaming payloads (``aws-chunked``), decoded and verified as the body streams, one chunk at a time.

A client that cannot hash a large body before sending it signs it chunk by chunk instead
(``x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD``): the body is ``<hex-size>;chunk-signature=<sig>\\r\\n
<data>\\r\\n`` repeated, ending with a zero-size chunk, and each chunk's signature chains from the previous one,
starting at the request's own (seed) signature::

    AWS4-HMAC-SHA256-PAYLOAD \\n <amz-date> \\n <scope> \\n <previous signature> \\n sha256("") \\n sha256(chunk)

The ``-TRAILER`` forms add header lines after the final chunk (``x-amz-checksum-crc32:<base64>``), named in
``x-amz-trailer``; the signed form closes them with ``x-amz-trailer-signature``, whose string to sign is
``AWS4-HMAC-SHA256-TRAILER\\n<amz-date>\\n<scope>\\n<previous signature>\\n<sha256 of the trailer lines>``.
``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` has bare ``<hex-size>\\r\\n`` chunks and no signatures (TLS vouches for
it), but its checksum trailer is still checked. ``UNSIGNED-PAYLOAD`` and a plain body pass through, a
``x-amz-checksum-*`` header or a hex ``x-amz-content-sha256`` checked at the end. ``x-amz-decoded-content-length``
must match what the chunks add up to.

Nothing is held but the chunk in hand: :attr:`BodyReader.max_buffered` records the most bytes held at once, never
more than one chunk (a chunk larger than ``max_chunk`` is refused before it is read). The signing key comes from
:func:`kambda.aws.sigv4.signing_key`; the seed signature is the one the auth layer verified for the request head.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from awscrt import checksums

from kambda.aws import errors, sigv4

SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING = frozenset((SIGNED, SIGNED_TRAILER, UNSIGNED_TRAILER))
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: The largest chunk accepted (SDKs send 64 KiB to 8 MiB).
MAX_CHUNK = 16 * 1024 * 1024
_MAX_LINE = 4096
_HEX64 = re.compile(r"[0-9a-f]{64}")


class S3Error(errors.KambdaError):
    error_type = "User"


class SignatureDoesNotMatch(S3Error):
    code = "SignatureDoesNotMatch"
    status = 403


class InvalidChunkSizeError(S3Error):
    code = "InvalidChunkSizeError"
    status = 403


class IncompleteBody(S3Error):
    code = "IncompleteBody"
    status = 400


class BadDigest(S3Error):
    code = "BadDigest"
    status = 400


class XAmzContentSHA256Mismatch(S3Error):
    code = "XAmzContentSHA256Mismatch"
    status = 400


class MissingContentLength(S3Error):
    code = "MissingContentLength"
    status = 411


class InvalidRequest(S3Error):
    code = "InvalidRequest"
    status = 400


class Source(Protocol):
    """What the body is read from: aiohttp's ``request.content`` has both."""

    async def readline(self) -> bytes: ...

    async def readexactly(self, n: int) -> bytes: ...

    async def read(self, n: int = -1) -> bytes: ...


# -- checksums ----------------------------------------------------------------------------------------------------

def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli), running from ``crc``: awscrt's (C, hardware-assisted; S3 bodies are large)."""
    return int(checksums.crc32c(data, crc))


def crc64nvme(data: bytes, crc: int = 0) -> int:
    """CRC-64/NVME (S3's CRC64NVME, the AWS CLI v2's default), running from ``crc``: awscrt's."""
    return int(checksums.crc64nvme(data, crc))


class _Crc:
    def __init__(self, fn: Callable[[bytes, int], int], size: int = 4) -> None:
        self.fn, self.value, self.size = fn, 0, size

    def update(self, data: bytes) -> None:
        self.value = self.fn(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(self.size, "big")


def checksum(algorithm: str) -> Any:
    """A running checksum with ``update`` and ``digest`` for ``crc32``, ``crc32c``, ``crc64nvme``, ``sha1`` or
    ``sha256``."""
    if algorithm == "crc32":
        return _Crc(zlib.crc32)
    if algorithm == "crc32c":
        return _Crc(crc32c)
    if algorithm == "crc64nvme":
        return _Crc(crc64nvme, 8)
    if algorithm in ("sha1", "sha256"):
        return hashlib.new(algorithm)
    raise InvalidRequest(f"The checksum algorithm '{algorithm}' is not supported.")


def _checksum_header(headers: Mapping[str, str]) -> tuple[str, str] | None:
    for name in ("crc32", "crc32c", "crc64nvme", "sha1", "sha256"):
        value = headers.get(f"x-amz-checksum-{name}")
        if value is not None:
            return name, value
    return None


# -- signatures ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChunkSigner:
    """What verifies a signed stream: the derived key, the request's date and scope, and its seed signature."""

    key: bytes
    amz_date: str
    scope: str
    seed: str

    @classmethod
    def for_request(cls, signed: sigv4.SignedRequest, secret: str) -> ChunkSigner:
        key = sigv4.signing_key(secret, signed.scope[:8], signed.region, signed.service)
        return cls(key, signed.amz_date, signed.scope, signed.signature)

    def chunk(self, previous: str, data_sha256: str) -> str:
        text = "\n".join(("AWS4-HMAC-SHA256-PAYLOAD", self.amz_date, self.scope, previous, EMPTY_SHA256, data_sha256))
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def trailer(self, previous: str, trailer_text: bytes) -> str:
        digest = hashlib.sha256(trailer_text).hexdigest()
        text = "\n".join(("AWS4-HMAC-SHA256-TRAILER", self.amz_date, self.scope, previous, digest))
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()


# -- readers ------------------------------------------------------------------------------------------------------

class BodyReader:
    """The decoded body, chunk by chunk (``async for``), verified as it goes; the last read raises on a bad end."""

    def __init__(self, source: Source, headers: Mapping[str, str], signer: ChunkSigner | None = None,
                 max_chunk: int = MAX_CHUNK, verify: bool = True) -> None:
        """``verify=False``: a signed stream's chunk signatures are read but not checked (a server that checks
        no signatures at all); lengths and checksums still are."""
        self.source = source
        self.mode = headers.get("x-amz-content-sha256") or ""
        self.max_chunk = max_chunk
        self.max_buffered = 0
        self.decoded = 0
        self._done = False
        if not verify:
            signer = None
        elif self.mode in (SIGNED, SIGNED_TRAILER) and signer is None:
            raise SignatureDoesNotMatch("A signed streaming payload needs the request's signature to verify.")
        self.signer = signer if self.mode in (SIGNED, SIGNED_TRAILER) else None
        self._previous = signer.seed if signer is not None else ""
        declared = headers.get("x-amz-decoded-content-length")
        if self.mode in STREAMING:
            if declared is None or not declared.isdigit():
                raise MissingContentLength("You must provide the x-amz-decoded-content-length HTTP header.")
            self.expected: int | None = int(declared)
        else:
            length = headers.get("Content-Length")
            self.expected = int(length) if length and length.isdigit() else None
        self.trailers = [n.strip().lower() for n in headers.get("x-amz-trailer", "").split(",") if n.strip()]
        if self.trailers and self.mode not in (SIGNED_TRAILER, UNSIGNED_TRAILER):
            raise InvalidRequest("x-amz-trailer needs a STREAMING-*-TRAILER payload.")
        if len(self.trailers) > 1:
            raise InvalidRequest("Only one checksum trailer is supported.")
        self._sum: Any = None
        self._claimed: tuple[str, str] | None = None
        if self.trailers:
            name = self.trailers[0]
            if not name.startswith("x-amz-checksum-"):
                raise InvalidRequest(f"The trailer '{name}' is not a checksum.")
            self._sum = checksum(name[len("x-amz-checksum-"):])
        elif (found := _checksum_header(headers)) is not None:
            self._claimed = found
            self._sum = checksum(found[0])
        self._sha256 = hashlib.sha256() if _HEX64.fullmatch(self.mode) else None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self.read_chunk()
            if not chunk:
                return
            yield chunk

    async def read_all(self, limit: int) -> bytes | None:
        """The whole decoded body, or None once it passes ``limit`` bytes (the caller answers 413)."""
        parts: list[bytes] = []
        async for chunk in self:
            if self.decoded > limit:
                return None
            parts.append(chunk)
        return b"".join(parts)

    async def read_chunk(self) -> bytes:
        """The next decoded chunk; b"" at the end, after the end is verified."""
        if self._done:
            return b""
        if self.mode in STREAMING:
            data = await self._next_aws_chunk()
        else:
            data = await self.source.read(min(self.max_chunk, 1 << 16))
            if not data:
                self._done = True
                self._finish_plain()
                return b""
        if data:
            self.max_buffered = max(self.max_buffered, len(data))
            self.decoded += len(data)
            if self.expected is not None and self.decoded > self.expected:
                raise IncompleteBody("The body is longer than its declared decoded content length.")
            if self._sum is not None:
                self._sum.update(data)
            if self._sha256 is not None:
                self._sha256.update(data)
        return data

    async def _line(self) -> bytes:
        line = await self.source.readline()
        if not line.endswith(b"\n"):
            raise IncompleteBody("The request body ended before the chunk it announced.")
        if len(line) > _MAX_LINE:
            raise InvalidChunkSizeError("A chunk header is too long.")
        return line.rstrip(b"\r\n")

    async def _next_aws_chunk(self) -> bytes:
        header = (await self._line()).decode("latin-1")
        size_text, _, extension = header.partition(";")
        try:
            size = int(size_text, 16)
        except ValueError:
            raise InvalidChunkSizeError(f"'{size_text[:20]}' is not a chunk size.") from None
        if size < 0 or size > self.max_chunk:
            raise InvalidChunkSizeError(f"A chunk of {size} bytes is larger than {self.max_chunk}.")
        claimed = None
        if self.signer is not None:
            key, _, claimed = extension.partition("=")
            if key.strip() != "chunk-signature" or not claimed:
                raise SignatureDoesNotMatch("Each chunk must carry its chunk-signature.")
        try:
            data = await self.source.readexactly(size) if size else b""
        except Exception:  # asyncio.IncompleteReadError or a broken connection
            raise IncompleteBody("The request body ended inside a chunk.") from None
        if self.signer is not None and claimed is not None:
            expected = self.signer.chunk(self._previous, hashlib.sha256(data).hexdigest())
            if not hmac.compare_digest(expected, claimed.strip()):
                raise SignatureDoesNotMatch(sigv4.SIGNATURE_MISMATCH)
            self._previous = expected
        if size:
            if await self.source.readexactly(2) != b"\r\n":
                raise IncompleteBody("A chunk does not end with CRLF.")
            return data
        await self._finish_chunks()
        return b""

    async def _finish_chunks(self) -> None:
        self._done = True
        if self.mode == SIGNED:
            tail = await self.source.readline()
            if tail not in (b"\r\n", b"\n", b""):
                raise IncompleteBody("Unexpected data after the final chunk.")
        else:
            await self._read_trailers()
        if self.expected is not None and self.decoded != self.expected:
            raise IncompleteBody(f"You did not provide the number of bytes specified by the "
                                 f"x-amz-decoded-content-length header ({self.decoded} of {self.expected}).")

    async def _read_trailers(self) -> None:
        found: dict[str, str] = {}
        signed_text = b""
        trailer_signature = None
        while True:
            raw = await self.source.readline()
            line = raw.rstrip(b"\r\n")
            if not line:
                break
            if len(raw) > _MAX_LINE:
                raise InvalidRequest("A trailer line is too long.")
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise InvalidRequest("A trailer line must be 'name:value'.")
            name = name.strip().lower()
            if name == "x-amz-trailer-signature":
                trailer_signature = value.strip()
            else:
                found[name] = value.strip()
                signed_text += f"{name}:{value.strip()}\n".encode("latin-1")
        if self.signer is not None:
            if trailer_signature is None:
                raise SignatureDoesNotMatch("The trailer signature is missing.")
            if not hmac.compare_digest(self.signer.trailer(self._previous, signed_text), trailer_signature):
                raise SignatureDoesNotMatch(sigv4.SIGNATURE_MISMATCH)
        for name in self.trailers:
            if name not in found:
                raise InvalidRequest(f"The trailer '{name}' was declared but not sent.")
            self._check_sum(name[len("x-amz-checksum-"):], found[name])

    def _check_sum(self, algorithm: str, claimed: str) -> None:
        actual = base64.b64encode(self._sum.digest()).decode()
        if not hmac.compare_digest(actual, claimed):
            raise BadDigest(f"The {algorithm.upper()} you specified did not match the calculated checksum.")

    def _finish_plain(self) -> None:
        if self.expected is not None and self.decoded != self.expected:
            raise IncompleteBody("The request body is shorter than its Content-Length.")
        if self._claimed is not None:
            self._check_sum(*self._claimed)
        if self._sha256 is not None and not hmac.compare_digest(self._sha256.hexdigest(), self.mode):
            raise XAmzContentSHA256Mismatch("The provided 'x-amz-content-sha256' header does not match what was "
                                            "computed.")


def is_streaming(headers: Mapping[str, str]) -> bool:
    return (headers.get("x-amz-content-sha256") or "") in STREAMING
