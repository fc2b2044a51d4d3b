"""S3's browser-facing features on the front door: CORS, bucket policies, website hosting, POST uploads and
lifecycle, wired in one place: ``WebApi(store, account).install(front, app)``.

* the configuration operations (Put/Get/Delete BucketCors, BucketPolicy, PublicAccessBlock, BucketWebsite,
  BucketLifecycle and GetBucketPolicyStatus), each document kept with :meth:`objects.store.Store.put_config`;
* an intercept for ``s3`` (:meth:`kambda.aws.front.Front.intercept`, before authentication): it answers CORS
  preflights (``OPTIONS``) and form POST uploads, and notes the CORS headers an ``Origin`` request gets, which
  ``app.on_response_prepare`` adds to whatever answers it (streamed bodies included);
* the front's authenticate and authorize hooks wrapped (:mod:`objects.policy`): unsigned S3 requests act as the
  anonymous caller and bucket policies are evaluated;
* the website endpoint mounted as the pseudo service ``s3-website``;
* the lifecycle pass (:class:`objects.lifecycle.Lifecycle`) started and stopped with the app.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from aiohttp import web

from kambda.aws.front import Context, Front
from kambda.aws.protocol import restxml
from kambda.aws.router import S3_WEBSITE, Route
from objects import cors, errors, lifecycle, policy, website
from objects.api import bucket_arn
from objects.post import PostUploads
from objects.store import Store

BLOCK = "public-access-block"
BLOCK_KEYS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


class NoSuchPublicAccessBlockConfiguration(errors.S3Error):
    code = "NoSuchPublicAccessBlockConfiguration"
    status = 404


#: The CORS headers an actual cross-origin request gets, noted by the intercept, added as the response starts.
CORS_HEADERS = web.RequestKey("s3-cors-headers", dict)


def _resources(ctx: Context, params: dict[str, Any]) -> tuple[str, ...]:
    return (bucket_arn(params["Bucket"]),)


class WebApi:
    def __init__(self, store: Store, account: str, lifecycle_interval_s: float = lifecycle.INTERVAL_S) -> None:
        self.store, self.account = store, account
        self.lifecycle = lifecycle.Lifecycle(store, store.clock, lifecycle_interval_s)
        self.posts: PostUploads | None = None

    # -- wiring ----------------------------------------------------------------------------------------------------

    def install(self, front: Front, app: web.Application) -> None:
        operations = {
            "PutBucketCors": self.put_cors, "GetBucketCors": self.get_cors, "DeleteBucketCors": self.delete_cors,
            "PutBucketPolicy": self.put_policy, "GetBucketPolicy": self.get_policy,
            "DeleteBucketPolicy": self.delete_policy, "GetBucketPolicyStatus": self.get_policy_status,
            "PutPublicAccessBlock": self.put_block, "GetPublicAccessBlock": self.get_block,
            "DeletePublicAccessBlock": self.delete_block,
            "PutBucketWebsite": self.put_website, "GetBucketWebsite": self.get_website,
            "DeleteBucketWebsite": self.delete_website,
            "PutBucketLifecycleConfiguration": self.put_lifecycle,
            "GetBucketLifecycleConfiguration": self.get_lifecycle, "DeleteBucketLifecycle": self.delete_lifecycle,
        }
        for name, handler in operations.items():
            front.register("s3", name, handler, _resources)
        if front.authenticate is not None:  # else nobody is authenticated, and there is nothing to authorize
            front.authorize = policy.authorizer(front.authorize, self.policy_of, self.account, self.exists)
            front.authenticate = policy.anonymous(front.authenticate, lambda r: _is_s3(front, r))
        self.posts = PostUploads(self.store, front.authorize)
        front.intercept("s3", self.intercept)
        front.mount(S3_WEBSITE, website.Website(self.store, self.policy_of, self.account).serve)
        app.on_response_prepare.append(_add_cors)
        app.on_startup.append(self._start)
        app.on_cleanup.insert(0, self._stop)

    async def _start(self, app: web.Application) -> None:
        await self.lifecycle.start()

    async def _stop(self, app: web.Application) -> None:
        await self.lifecycle.stop()

    async def policy_of(self, bucket: str) -> policy.BucketPolicy | None:
        try:
            text = await self.store.get_config(bucket, "policy")
            if not text:
                return None
            found = _parsed(text, bucket)
            if found.public and (await self._block(bucket)).get("RestrictPublicBuckets"):
                return dataclasses.replace(found, restricted=True)
            return found
        except errors.S3Error:
            return None

    async def _block(self, bucket: str) -> dict[str, Any]:
        return dict(await self.store.get_config(bucket, BLOCK) or {})

    async def exists(self, bucket: str, key: str) -> bool:
        try:
            await self.store.head(bucket, key)
        except errors.S3Error:
            return False
        return True

    async def intercept(self, request: web.Request, route: Route, request_id: str) -> web.StreamResponse | None:
        bucket = route.bucket or _path_bucket(request)
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS":
            if not bucket:
                return None
            try:
                rules = await self.store.get_config(bucket, "cors")
            except errors.S3Error as err:
                if err.code != "NoSuchBucket":
                    raise
                rules = cors.NO_BUCKET
            headers = cors.preflight(rules, request.headers)
            return web.Response(status=200, headers={**headers, **restxml.request_id_headers(request_id)})
        if origin and bucket:
            try:
                rules = await self.store.get_config(bucket, "cors")
            except errors.S3Error:
                rules = None
            found = cors.actual(rules, origin, request.method)
            if found:
                request[CORS_HEADERS] = found
        if self.posts is not None:
            return await self.posts.handle(request, route, request_id)
        return None

    # -- CORS ------------------------------------------------------------------------------------------------------

    async def put_cors(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        rules = cors.validate(params.get("CORSConfiguration"))
        await self.store.put_config(params["Bucket"], "cors", rules)
        return {}

    async def get_cors(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        rules = await self.store.get_config(params["Bucket"], "cors")
        if rules is None:
            raise errors.NoSuchCORSConfiguration("The CORS configuration does not exist",
                                                 BucketName=params["Bucket"])
        return {"CORSRules": rules}

    async def delete_cors(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        await self.store.put_config(params["Bucket"], "cors", None)
        return {}

    # -- policy ----------------------------------------------------------------------------------------------------

    async def put_policy(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        text = params.get("Policy")
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        parsed = policy.BucketPolicy.parse(text or "", params["Bucket"])
        if parsed.public and (await self._block(params["Bucket"])).get("BlockPublicPolicy"):
            raise errors.AccessDenied(f"User: arn:aws:iam::{self.account}:root is not authorized to perform: "
                                      f"s3:PutBucketPolicy on resource: \"arn:aws:s3:::{params['Bucket']}\" "
                                      "because public policies are blocked by the BlockPublicPolicy block public "
                                      "access setting.")
        await self.store.put_config(params["Bucket"], "policy", text)
        return {}

    async def get_policy(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        text = await self.store.get_config(params["Bucket"], "policy")
        if text is None:
            raise errors.NoSuchBucketPolicy("The bucket policy does not exist", BucketName=params["Bucket"])
        return {"Policy": text}

    async def delete_policy(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        await self.store.put_config(params["Bucket"], "policy", None)
        return {}

    async def get_policy_status(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        text = await self.store.get_config(params["Bucket"], "policy")
        if text is None:
            raise errors.NoSuchBucketPolicy("The bucket policy does not exist", BucketName=params["Bucket"])
        return {"PolicyStatus": {"IsPublic": policy.BucketPolicy.parse(text, params["Bucket"]).public}}

    async def put_block(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        config = params.get("PublicAccessBlockConfiguration") or {}
        await self.store.put_config(params["Bucket"], BLOCK, {k: bool(config.get(k)) for k in BLOCK_KEYS})
        return {}

    async def get_block(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        config = await self.store.get_config(params["Bucket"], BLOCK)
        if config is None:
            raise NoSuchPublicAccessBlockConfiguration("The public access block configuration was not found",
                                                       BucketName=params["Bucket"])
        return {"PublicAccessBlockConfiguration": config}

    async def delete_block(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        await self.store.put_config(params["Bucket"], BLOCK, None)
        return {}

    # -- website ---------------------------------------------------------------------------------------------------

    async def put_website(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        await self.store.put_config(params["Bucket"], "website", website.validate(params.get("WebsiteConfiguration")))
        return {}

    async def get_website(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        config = await self.store.get_config(params["Bucket"], "website")
        if config is None:
            raise errors.NoSuchWebsiteConfiguration("The specified bucket does not have a website configuration",
                                                    BucketName=params["Bucket"])
        return dict(config)

    async def delete_website(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        await self.store.put_config(params["Bucket"], "website", None)
        return {}

    # -- lifecycle -------------------------------------------------------------------------------------------------

    async def put_lifecycle(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        rules = lifecycle.validate(params.get("LifecycleConfiguration"))
        await self.store.put_config(params["Bucket"], "lifecycle", rules)
        return {}

    async def get_lifecycle(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        rules = await self.store.get_config(params["Bucket"], "lifecycle")
        if rules is None:
            raise errors.NoSuchLifecycleConfiguration("The lifecycle configuration does not exist",
                                                      BucketName=params["Bucket"])
        return {"Rules": rules}

    async def delete_lifecycle(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        await self.store.put_config(params["Bucket"], "lifecycle", None)
        return {}


@functools.lru_cache(maxsize=256)
def _parsed(text: str, bucket: str) -> policy.BucketPolicy:
    """Policies are parsed once per text (every request of a credentialed gateway consults its bucket's)."""
    return policy.BucketPolicy.parse(text, bucket)


def _path_bucket(request: web.Request) -> str | None:
    name = request.raw_path.partition("?")[0].lstrip("/").partition("/")[0]
    return name or None


def _is_s3(front: Front, request: web.Request) -> bool:
    route = front.router.route(request.method, request.raw_path.partition("?")[0], request.query, request.headers)
    return route is not None and route.service == "s3"


async def _add_cors(request: web.Request, response: web.StreamResponse) -> None:
    found = request.get(CORS_HEADERS)
    if found:
        for name, value in found.items():
            response.headers.setdefault(name, value)
