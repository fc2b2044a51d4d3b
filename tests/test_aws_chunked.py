"""aws-chunked bodies: signed with botocore's SigV4 helpers (seed and chunk signatures), decoded and verified one
chunk at a time; tampering, a bad trailing checksum and a wrong decoded length are refused."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import zlib
from datetime import UTC, datetime

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest
from multidict import CIMultiDict

from kambda.aws import chunked, sigv4

NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
CREDS = botocore.credentials.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
CHUNK = 8192


def source(body: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(body)
    reader.feed_eof()
    return reader


class Upload:
    """A PUT signed by botocore with a streaming payload hash; chunk signatures chained by botocore's signer."""

    def __init__(self, mode: str, data: bytes, trailer: str | None = None) -> None:
        self.mode, self.data, self.trailer = mode, data, trailer
        headers = {"Host": "kambda.test", "X-Amz-Content-SHA256": mode, "Content-Encoding": "aws-chunked",
                   "X-Amz-Decoded-Content-Length": str(len(data))}
        if trailer:
            headers["X-Amz-Trailer"] = trailer
        self.request = botocore.awsrequest.AWSRequest("PUT", "http://kambda.test/bucket/key", headers=headers)
        self.auth = botocore.auth.SigV4Auth(CREDS, "s3", "us-east-1")
        self.request.context["timestamp"] = NOW.strftime(sigv4.AMZ_DATE)
        self.auth._modify_request_before_signing(self.request)  # noqa: SLF001 (sets X-Amz-Date as add_auth does)
        canonical = self.auth.canonical_request(self.request)
        self.seed = self.auth.signature(self.auth.string_to_sign(self.request, canonical), self.request)
        self.scope = self.auth.credential_scope(self.request)
        self.auth._inject_signature_to_request(self.request, self.seed)  # noqa: SLF001 (the Authorization header)

    def sign(self, previous: str, text: str) -> str:
        return self.auth.signature(text, self.request)  # type: ignore[no-any-return]

    def body(self, checksum: str | None = None, tamper: int | None = None) -> bytes:
        out, previous = [], self.seed
        pieces = [self.data[i:i + CHUNK] for i in range(0, len(self.data), CHUNK)] + [b""]
        signed = self.mode != chunked.UNSIGNED_TRAILER
        for n, piece in enumerate(pieces):
            if signed:
                text = "\n".join(("AWS4-HMAC-SHA256-PAYLOAD", NOW.strftime(sigv4.AMZ_DATE), self.scope, previous,
                                  hashlib.sha256(b"").hexdigest(), hashlib.sha256(piece).hexdigest()))
                previous = self.sign(previous, text)
                out.append(f"{len(piece):x};chunk-signature={previous}\r\n".encode())
            else:
                out.append(f"{len(piece):x}\r\n".encode())
            if n == tamper:
                piece = piece[:-1] + bytes([piece[-1] ^ 1])
            if piece:
                out.append(piece + b"\r\n")
        if self.trailer:
            line = f"{self.trailer}:{checksum}\n".encode()
            out.append(line.replace(b"\n", b"\r\n"))
            if signed:
                text = "\n".join(("AWS4-HMAC-SHA256-TRAILER", NOW.strftime(sigv4.AMZ_DATE), self.scope, previous,
                                  hashlib.sha256(line).hexdigest()))
                out.append(f"x-amz-trailer-signature:{self.sign(previous, text)}\r\n".encode())
        out.append(b"\r\n")
        return b"".join(out)

    def headers(self) -> CIMultiDict[str]:
        return CIMultiDict(self.request.headers.items())

    def signer(self) -> chunked.ChunkSigner:
        signed = sigv4.parse(self.headers(), {})
        assert signed is not None and signed.signature == self.seed
        return chunked.ChunkSigner.for_request(signed, CREDS.secret_key)


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


DATA = bytes(range(256)) * 200 + b"tail"  # 51204 bytes: six full chunks and a short one


async def test_signed_stream_verifies_each_chunk_holding_one_at_a_time() -> None:
    upload = Upload(chunked.SIGNED, DATA)
    reader = chunked.BodyReader(source(upload.body()), upload.headers(), upload.signer())
    parts = [part async for part in reader]
    assert b"".join(parts) == DATA and len(parts) == 7
    assert reader.max_buffered <= CHUNK


async def test_tampered_chunk_is_refused() -> None:
    upload = Upload(chunked.SIGNED, DATA)
    reader = chunked.BodyReader(source(upload.body(tamper=2)), upload.headers(), upload.signer())
    with pytest.raises(chunked.SignatureDoesNotMatch):
        await reader.read_all(1 << 20)
    assert reader.decoded == 2 * CHUNK  # the first two chunks passed, the third never reached the caller


async def test_wrong_secret_is_refused_at_the_first_chunk() -> None:
    upload = Upload(chunked.SIGNED, DATA)
    signed = sigv4.parse(upload.headers(), {})
    assert signed is not None
    reader = chunked.BodyReader(source(upload.body()), upload.headers(), chunked.ChunkSigner.for_request(signed, "x"))
    with pytest.raises(chunked.SignatureDoesNotMatch):
        await reader.read_chunk()


@pytest.mark.parametrize(("name", "digest"), [
    ("x-amz-checksum-crc32", lambda d: zlib.crc32(d).to_bytes(4, "big")),
    ("x-amz-checksum-crc32c", lambda d: chunked.crc32c(d).to_bytes(4, "big")),
    ("x-amz-checksum-sha1", lambda d: hashlib.sha1(d).digest()),
    ("x-amz-checksum-sha256", lambda d: hashlib.sha256(d).digest())])
async def test_signed_trailer_checksums(name: str, digest: object) -> None:
    upload = Upload(chunked.SIGNED_TRAILER, DATA, trailer=name)
    good = b64(digest(DATA))  # type: ignore[operator]
    reader = chunked.BodyReader(source(upload.body(good)), upload.headers(), upload.signer())
    assert await reader.read_all(1 << 20) == DATA
    bad = b64(digest(DATA + b"!"))  # type: ignore[operator]
    reader = chunked.BodyReader(source(upload.body(bad)), upload.headers(), upload.signer())
    with pytest.raises(chunked.BadDigest):
        await reader.read_all(1 << 20)


async def test_signed_trailer_signature_is_checked() -> None:
    upload = Upload(chunked.SIGNED_TRAILER, DATA, trailer="x-amz-checksum-crc32")
    body = upload.body(b64(zlib.crc32(DATA).to_bytes(4, "big")))
    forged = body.replace(b"x-amz-trailer-signature:", b"x-amz-trailer-signature:0")[:-(64 + 4)] + b"\r\n\r\n"
    reader = chunked.BodyReader(source(forged), upload.headers(), upload.signer())
    with pytest.raises(chunked.SignatureDoesNotMatch):
        await reader.read_all(1 << 20)


async def test_unsigned_trailer_checks_the_checksum() -> None:
    upload = Upload(chunked.UNSIGNED_TRAILER, DATA, trailer="x-amz-checksum-crc32")
    good = b64(zlib.crc32(DATA).to_bytes(4, "big"))
    reader = chunked.BodyReader(source(upload.body(good)), upload.headers())
    assert await reader.read_all(1 << 20) == DATA
    reader = chunked.BodyReader(source(upload.body(b64(b"\0\0\0\0"))), upload.headers())
    with pytest.raises(chunked.BadDigest):
        await reader.read_all(1 << 20)


async def test_decoded_length_and_truncation() -> None:
    upload = Upload(chunked.SIGNED, DATA)
    headers = upload.headers()
    headers["X-Amz-Decoded-Content-Length"] = str(len(DATA) - 1)
    with pytest.raises(chunked.IncompleteBody):
        await chunked.BodyReader(source(upload.body()), headers, upload.signer()).read_all(1 << 20)
    with pytest.raises(chunked.IncompleteBody):
        await chunked.BodyReader(source(upload.body()[:20000]), upload.headers(), upload.signer()).read_all(1 << 20)
    del headers["X-Amz-Decoded-Content-Length"]
    with pytest.raises(chunked.MissingContentLength):
        chunked.BodyReader(source(b""), headers, upload.signer())


async def test_oversize_chunk_refused_before_it_is_read() -> None:
    upload = Upload(chunked.SIGNED, DATA)
    reader = chunked.BodyReader(source(upload.body()), upload.headers(), upload.signer(), max_chunk=4096)
    with pytest.raises(chunked.InvalidChunkSizeError):
        await reader.read_chunk()
    assert reader.max_buffered == 0


async def test_plain_and_unsigned_payloads() -> None:
    headers = CIMultiDict({"x-amz-content-sha256": chunked.UNSIGNED, "Content-Length": str(len(DATA)),
                           "x-amz-checksum-crc32": b64(zlib.crc32(DATA).to_bytes(4, "big"))})
    assert await chunked.BodyReader(source(DATA), headers).read_all(1 << 20) == DATA
    headers["x-amz-checksum-crc32"] = b64(b"\0\0\0\1")
    with pytest.raises(chunked.BadDigest):
        await chunked.BodyReader(source(DATA), headers).read_all(1 << 20)
    hashed = CIMultiDict({"x-amz-content-sha256": hashlib.sha256(b"other").hexdigest()})
    with pytest.raises(chunked.XAmzContentSHA256Mismatch):
        await chunked.BodyReader(source(DATA), hashed).read_all(1 << 20)
    assert await chunked.BodyReader(source(DATA), CIMultiDict()).read_all(100) is None


def test_crc32c_known_value() -> None:
    assert chunked.crc32c(b"123456789") == 0xE3069283
    assert chunked.crc32c(b"6789", chunked.crc32c(b"12345")) == 0xE3069283
