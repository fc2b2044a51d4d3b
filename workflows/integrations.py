"""The integrations a task reaches without the executor: EventBridge's PutEvents, HTTP endpoints and the AWS SDK
integrations (shared by the durable runtime and EXPRESS executions)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import aiohttp
import orjson
from nats.js import JetStreamContext

from kambda import bus
from workflows.language import StatesError
from workflows.sdk import AwsSdk


async def put_events(js: JetStreamContext, execution_arn: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """``events:putEvents``: each entry stored on its bus's stream, as PutEvents does."""
    out = []
    for entry in entries:
        detail = entry.get("Detail", {})
        event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": entry.get("DetailType", ""),
                 "source": entry.get("Source", ""), "account": execution_arn.split(":")[4],
                 "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "region": execution_arn.split(":")[3],
                 "resources": list(entry.get("Resources") or []) + [execution_arn],
                 "detail": orjson.loads(detail) if isinstance(detail, str) else detail}
        event_bus = str(entry.get("EventBusName") or "default").rsplit("/", 1)[-1]
        await js.publish(bus.events_subject(event_bus), orjson.dumps(event), timeout=10)
        out.append({"EventId": event["id"]})
    return {"Entries": out, "FailedEntryCount": 0}


async def http_call(args: dict[str, Any]) -> dict[str, Any]:
    """``http:invoke``: the request, and the answer as AWS shapes it; a status of 400 or more is the error
    ``States.Http.StatusCode.<status>``."""
    endpoint = args.get("ApiEndpoint")
    method = str(args.get("Method") or "GET").upper()
    if not isinstance(endpoint, str):
        raise StatesError("States.Runtime", "http:invoke needs ApiEndpoint")
    body = args.get("RequestBody")
    headers = {str(k): str(v) for k, v in (args.get("Headers") or {}).items()}
    data: bytes | None = None
    if body is not None:
        data = body.encode() if isinstance(body, str) else orjson.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session, \
                session.request(method, endpoint, params=args.get("QueryParameters"), data=data,
                                headers=headers) as response:
            text = await response.text()
            status, reason = response.status, response.reason or ""
            answer_headers = {str(k): v for k, v in response.headers.items()}
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise StatesError("States.Http.Socket", str(exc)) from None
    try:
        parsed: Any = orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        parsed = text
    answer = {"Headers": answer_headers, "ResponseBody": parsed, "StatusCode": status, "StatusText": reason}
    if status >= 400:
        raise StatesError(f"States.Http.StatusCode.{status}", orjson.dumps(answer).decode())
    return answer


async def sdk_call(sdk: AwsSdk | None, service: str, action: str, params: Any, role_arn: str, caller: str,
                   error_prefix: str | None) -> Any:
    if sdk is None:
        raise StatesError("States.Runtime", "This platform runs no AWS SDK integrations (no KAMBDA_ENDPOINT_URL)")
    return await sdk.call(service, action, params, role_arn=role_arn, caller=caller, error_prefix=error_prefix)
