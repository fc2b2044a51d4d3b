"""Static website hosting: the bucket's website configuration and its website endpoint.

The endpoint is a host name, ``<bucket>.s3-website.<domain>`` (also ``<bucket>.s3-website-<region>.<domain>`` and
``<bucket>.s3-website.<region>.<domain>``, AWS's two spellings; :mod:`kambda.aws.router` routes them as the
pseudo service ``s3-website``). As on AWS it answers plain, unsigned GET and HEAD only, as the anonymous caller:
the bucket's policy must let anyone ``s3:GetObject`` (403 otherwise); errors are HTML pages, not XML.

Serving a path: ``RedirectAllRequestsTo`` redirects everything (301); else a routing rule whose KeyPrefixEquals
matches (and that names no error code) redirects; ``/`` and ``dir/`` get the index document appended; a missing
``dir`` whose ``dir/<index>`` exists redirects to ``/dir/`` (302); an object's ``WebsiteRedirectLocation``
redirects (301); a missing key is answered by a routing rule for its error code, else the error document with
404 (403 when access was denied, or when the key is missing and the policy does not let anyone ``s3:ListBucket``,
as S3 hides which keys exist from who cannot list them), else S3's HTML error page.
"""

from __future__ import annotations

import asyncio
import email.utils
import html
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web

from kambda.aws import auth
from kambda.aws.router import Route
from kambda.names import new_request_id
from objects import errors
from objects.api import DEFAULT_TYPE, parse_range
from objects.policy import ANONYMOUS, PolicyOf, check, denied, may
from objects.store import Conditions, ObjectMeta, Store, check_read_conditions

HEADERS = {"Content-Type": "Content-Type", "Content-Encoding": "Content-Encoding",
           "Content-Disposition": "Content-Disposition", "Content-Language": "Content-Language",
           "Cache-Control": "Cache-Control", "Expires": "Expires"}
_TITLES = {403: "403 Forbidden", 404: "404 Not Found", 405: "405 Method Not Allowed", 500: "500 Internal Server Error",
           503: "503 Service Unavailable"}
log = logging.getLogger(__name__)
#: Set once a response's headers are on their way (a failure after that cannot become an error page).
_STARTED = web.RequestKey("s3-website-started", bool)


def _malformed() -> errors.S3Error:
    return errors.MalformedXML("The XML you provided was not well-formed or did not validate against our published "
                               "schema")


def validate(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """PutBucketWebsite's ``WebsiteConfiguration`` as stored, or S3's InvalidArgument / InvalidRequest."""
    config = dict(config or {})
    redirect_all = config.get("RedirectAllRequestsTo")
    index = config.get("IndexDocument")
    if redirect_all is not None:
        if index is not None or config.get("ErrorDocument") or config.get("RoutingRules"):
            raise errors.InvalidArgument("RedirectAllRequestsTo cannot be provided in conjunction with other "
                                         "Routing Rules.", ArgumentName="RedirectAllRequestsTo",
                                         ArgumentValue="not null")
        if not redirect_all.get("HostName"):
            raise _malformed()
        if redirect_all.get("Protocol") not in (None, "http", "https"):
            raise _malformed()
        return config
    if index is None:
        raise errors.InvalidArgument("A value for IndexDocument Suffix must be provided if RedirectAllRequestsTo "
                                     "is empty", ArgumentName="IndexDocument", ArgumentValue="null")
    suffix = index.get("Suffix") or ""
    if not suffix or "/" in suffix:
        raise errors.InvalidArgument("The IndexDocument Suffix is not well formed", ArgumentName="IndexDocument",
                                     ArgumentValue=suffix)
    error = config.get("ErrorDocument")
    if error is not None and not error.get("Key"):
        raise errors.InvalidArgument("The ErrorDocument Key is not well formed", ArgumentName="ErrorDocument",
                                     ArgumentValue="")
    for rule in config.get("RoutingRules") or ():
        redirect = rule.get("Redirect")
        if not redirect:
            raise _malformed()
        if "ReplaceKeyWith" in redirect and "ReplaceKeyPrefixWith" in redirect:
            raise errors.InvalidRequest("You can only define ReplaceKeyPrefix or ReplaceKey but not both.")
        code = redirect.get("HttpRedirectCode")
        if code is not None and not (str(code).isdigit() and 300 <= int(code) < 400):
            raise errors.InvalidArgument("The provided HTTP redirect code is not valid. It should be a string "
                                         "containing a number in the range 300-399.",
                                         ArgumentName="HttpRedirectCode", ArgumentValue=str(code))
        if protocol := redirect.get("Protocol"):
            if protocol not in ("http", "https"):
                raise _malformed()
    return config


def page(status: int, code: str, message: str, request_id: str, details: Mapping[str, str] | None = None,
         error_document: errors.S3Error | None = None, error_key: str = "") -> str:
    """S3's website error page (HTML)."""
    title = _TITLES.get(status, f"{status} Error")
    items = [f"<li>Code: {html.escape(code)}</li>", f"<li>Message: {html.escape(message)}</li>"]
    items += [f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in (details or {}).items()]
    items += [f"<li>RequestId: {request_id}</li>", f"<li>HostId: {request_id}</li>"]
    nested = ""
    if error_document is not None:
        nested = ("<h3>An Error Occurred While Attempting to Retrieve a Custom Error Document</h3>\n<ul>\n"
                  f"<li>Code: {html.escape(error_document.code)}</li>\n"
                  f"<li>Message: {html.escape(error_document.message)}</li>\n"
                  f"<li>Key: {html.escape(error_key)}</li>\n</ul>\n")
    return (f"<html>\n<head><title>{title}</title></head>\n<body>\n<h1>{title}</h1>\n<ul>\n" + "\n".join(items)
            + "\n</ul>\n" + nested + "<hr/>\n</body>\n</html>\n")


def find_rule(rules: list[Mapping[str, Any]], key: str, error: int | None) -> Mapping[str, Any] | None:
    """The first routing rule for ``key`` (and, after an error, that error's code): a rule with an error-code
    condition applies only after that error; one with neither condition applies to every request."""
    for rule in rules:
        condition = rule.get("Condition") or {}
        prefix = condition.get("KeyPrefixEquals")
        code = condition.get("HttpErrorCodeReturnedEquals")
        if prefix is not None and not key.startswith(prefix):
            continue
        if code is not None and (error is None or str(error) != str(code)):
            continue
        if code is None and error is not None:
            continue  # prefix-only rules were tried before the key was looked up
        return rule
    return None


def redirect_location(request: web.Request, rule: Mapping[str, Any], key: str) -> tuple[int, str]:
    redirect = rule["Redirect"]
    prefix = (rule.get("Condition") or {}).get("KeyPrefixEquals") or ""
    if "ReplaceKeyWith" in redirect:
        key = redirect["ReplaceKeyWith"] or ""
    elif "ReplaceKeyPrefixWith" in redirect:
        key = (redirect["ReplaceKeyPrefixWith"] or "") + key[len(prefix):]
    host = redirect.get("HostName") or request.host
    scheme = redirect.get("Protocol") or request.scheme
    return int(redirect.get("HttpRedirectCode") or 301), f"{scheme}://{host}/{quote(key, safe='/~')}"


class Website:
    """The website endpoint's handler (mounted on the front door as ``s3-website``)."""

    def __init__(self, store: Store, policy_of: PolicyOf, account: str) -> None:
        self.store, self.policy_of, self.account = store, policy_of, account

    async def serve(self, request: web.Request, route: Route) -> web.StreamResponse:
        """The endpoint's answer; a failure is an HTML page too (a 5xx one for kambda's own), never a traceback."""
        request_id = new_request_id()
        try:
            return await self._serve(request, route, request_id)
        except errors.S3Error as err:
            if request.get(_STARTED):
                raise  # the headers are out: only breaking the connection off says it now
            return self._page(request, err.status, err.code, err.message, request_id)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception:
            if request.get(_STARTED):
                raise
            log.exception("s3-website: %s %s failed (request %s)", request.method, request.path, request_id)
            return self._page(request, 500, "InternalError", "We encountered an internal error. Please try again.",
                              request_id)

    async def _serve(self, request: web.Request, route: Route, request_id: str) -> web.StreamResponse:
        bucket = route.bucket or ""
        headers = {"x-amz-request-id": request_id, "x-amz-id-2": request_id}
        if request.method not in ("GET", "HEAD"):
            return self._page(request, 405, "MethodNotAllowed", "The specified method is not allowed against this "
                              "resource.", request_id, {"Method": request.method, "ResourceType": "OBJECT"})
        try:
            config = await self.store.get_config(bucket, "website")
        except errors.S3Error as err:
            if err.code != "NoSuchBucket":
                raise
            return self._page(request, 404, err.code, err.message, request_id, {"BucketName": bucket})
        if config is None:
            return self._page(request, 404, "NoSuchWebsiteConfiguration",
                              "The specified bucket does not have a website configuration", request_id,
                              {"BucketName": bucket})
        redirect_all = config.get("RedirectAllRequestsTo")
        if redirect_all:
            scheme = redirect_all.get("Protocol") or request.scheme
            return web.Response(status=301, headers={**headers,
                                                     "Location": f"{scheme}://{redirect_all['HostName']}"
                                                                 f"{request.raw_path}"})
        rules = list(config.get("RoutingRules") or ())
        key = request.path[1:]
        if rules and (rule := find_rule(rules, key, None)) is not None:
            status, location = redirect_location(request, rule, key)
            return web.Response(status=status, headers={**headers, "Location": location})
        suffix = config["IndexDocument"]["Suffix"]
        folder = not key or key.endswith("/")
        wanted = key + suffix if folder else key
        request[auth.PRINCIPAL] = ANONYMOUS
        try:
            await check(request, self.policy_of, self.account, "s3:GetObject", f"arn:aws:s3:::{bucket}/{wanted}",
                        None)
            meta = await self.store.head(bucket, wanted)
        except errors.S3Error as err:
            if err.code == "NoSuchKey":
                if not folder and await self._exists(bucket, f"{key}/{suffix}"):
                    return web.Response(status=302, headers={**headers, "Location": f"/{quote(key, safe='/~')}/"})
                if not await may(request, self.policy_of, self.account, "s3:ListBucket", f"arn:aws:s3:::{bucket}",
                                 None):
                    err = denied()  # who may not list the bucket may not learn which keys are missing
            status = 403 if err.code == "AccessDenied" else 404
            if rules and (rule := find_rule(rules, wanted, status)) is not None:
                code, location = redirect_location(request, rule, wanted)
                return web.Response(status=code, headers={**headers, "Location": location})
            return await self._error(request, bucket, config, status, err, wanted, request_id)
        return await self._object(request, meta, 200, headers)

    async def _exists(self, bucket: str, key: str) -> bool:
        policy = await self.policy_of(bucket)
        if policy is None or policy.decide("anonymous", self.account, "s3:GetObject",
                                           f"arn:aws:s3:::{bucket}/{key}") is not True:
            return False
        try:
            await self.store.head(bucket, key)
        except errors.S3Error:
            return False
        return True

    async def _error(self, request: web.Request, bucket: str, config: Mapping[str, Any], status: int,
                     err: errors.S3Error, key: str, request_id: str) -> web.StreamResponse:
        details = {"Key": key} if err.code == "NoSuchKey" else {}
        document = (config.get("ErrorDocument") or {}).get("Key")
        if not document:
            return self._page(request, status, err.code, err.message, request_id, details)
        try:
            await check(request, self.policy_of, self.account, "s3:GetObject",
                        f"arn:aws:s3:::{bucket}/{document}", None)
            meta = await self.store.head(bucket, document)
        except errors.S3Error as nested:
            return self._page(request, status, err.code, err.message, request_id, details, nested, document)
        return await self._object(request, meta, status, {"x-amz-request-id": request_id,
                                                          "x-amz-id-2": request_id}, conditional=False)

    async def _object(self, request: web.Request, meta: ObjectMeta, status: int, headers: dict[str, str],
                      conditional: bool = True) -> web.StreamResponse:
        location = meta.headers.get("WebsiteRedirectLocation")
        if location:
            return web.Response(status=301, headers={**headers, "Location": location})
        out = dict(headers)
        out["Content-Type"] = meta.headers.get("Content-Type") or DEFAULT_TYPE
        for name, header in HEADERS.items():
            if name != "Content-Type" and meta.headers.get(name):
                out[header] = meta.headers[name]
        out["ETag"] = meta.etag
        out["Last-Modified"] = email.utils.formatdate(meta.last_modified, usegmt=True)
        out.update({f"x-amz-meta-{k}": v for k, v in meta.metadata.items()})
        if conditional:
            try:
                check_read_conditions(meta, _conditions(request))
            except errors.NotModified:
                return web.Response(status=304, headers={k: v for k, v in out.items() if k != "Content-Type"})
            except errors.S3Error as err:
                return self._page(request, err.status, err.code, err.message, headers["x-amz-request-id"])
        start, end = 0, meta.size
        if conditional and status == 200:
            try:
                found = parse_range(request.headers.get("Range"), meta.size)
            except errors.S3Error as err:
                return self._page(request, err.status, err.code, err.message, headers["x-amz-request-id"])
            if found is not None:
                start, end = found
                status = 206
                out["Content-Range"] = f"bytes {start}-{end - 1}/{meta.size}"
        out["Content-Length"] = str(end - start)
        out["Accept-Ranges"] = "bytes"
        response = web.StreamResponse(status=status, headers=out)
        response.content_length = end - start
        request[_STARTED] = True
        await response.prepare(request)
        if request.method != "HEAD" and end > start:
            async for chunk in self.store.read(meta, start, end):
                await response.write(chunk)
        await response.write_eof()
        return response

    def _page(self, request: web.Request, status: int, code: str, message: str, request_id: str,
              details: Mapping[str, str] | None = None, nested: errors.S3Error | None = None,
              error_key: str = "") -> web.Response:
        body = page(status, code, message, request_id, details, nested, error_key).encode()
        headers = {"x-amz-request-id": request_id, "x-amz-id-2": request_id}
        if request.method == "HEAD":
            return web.Response(status=status, headers=headers)
        return web.Response(status=status, body=body, headers=headers, content_type="text/html", charset="utf-8")


def _date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def _conditions(request: web.Request) -> Conditions:
    h = request.headers
    return Conditions(if_match=h.get("If-Match"), if_none_match=h.get("If-None-Match"),
                      if_modified_since=_date(h.get("If-Modified-Since")),
                      if_unmodified_since=_date(h.get("If-Unmodified-Since")))
