"""S3 bucket notifications (objects/notifications.py).

The configuration's validation and matching and the records' shape are checked as pure functions against the
shapes AWS documents; the outbox (rows written in the change's transaction, stored on JetStream before the write
is answered, the relay for what a failed publish or a crash left, JetStream's dedupe of a second publish) runs
against a real nats-server and a real SQLite database; the platform tests at the end drive a running kambda with
boto3 and a function that appends what it receives to a ledger file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import nats
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from kambda import bus
from kambda.bus.natsserver import NatsServer
from kambda.names import Arns
from kambda.procs import service_pids
from kambda.sql import Database, Tx
from kambda.v1.invocation_pb2 import Invocation
from objects import errors
from objects import notifications as n
from objects.store import Actor, Change, Conditions, ObjectMeta, Store
from tests.conftest import Platform, make_zip, unique, until, wait_for
from tests.postgres import fresh_database, postgres_server

REGION, ACCOUNT = "us-east-1", "000000000000"
FN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn"
T0 = 1_700_000_000.25


def meta(key: str = "photos/red flower.jpg", **kw: Any) -> ObjectMeta:
    base: dict[str, Any] = {"bucket": "bkt", "key": key, "version_id": "null", "size": 5,
                            "etag": '"b1946ac92492d2347c6235b4d2611184"', "last_modified": T0,
                            "sequencer": "0000000000000001"}
    base.update(kw)
    return ObjectMeta(**base)


def change(event: str = "ObjectCreated:Put", **kw: Any) -> Change:
    return Change(event=event, meta=meta(**kw), actor=Actor("AKIDEXAMPLE", "10.0.0.7", "REQ1"), time=T0)


def lambda_config(events: list[str], prefix: str | None = None, suffix: str | None = None,
                  arn: str = FN, id: str | None = None) -> dict[str, Any]:
    rules = ([{"Name": "prefix", "Value": prefix}] if prefix is not None else []) + \
        ([{"Name": "suffix", "Value": suffix}] if suffix is not None else [])
    config: dict[str, Any] = {"LambdaFunctionArn": arn, "Events": events}
    if rules:
        config["Filter"] = {"Key": {"FilterRules": rules}}
    if id:
        config["Id"] = id
    return config


# -- configuration ----------------------------------------------------------------------------------------------


def test_event_types_cover_as_s3_matches_them() -> None:
    assert n.covers("s3:ObjectCreated:*", "s3:ObjectCreated:CompleteMultipartUpload")
    assert n.covers("s3:ObjectRemoved:*", "s3:ObjectRemoved:DeleteMarkerCreated")
    assert n.covers("s3:ObjectCreated:Put", "s3:ObjectCreated:Put")
    assert not n.covers("s3:ObjectCreated:Put", "s3:ObjectCreated:Copy")
    assert not n.covers("s3:ObjectCreated:*", "s3:ObjectRemoved:Delete")
    assert not n.covers("s3:ObjectRemoved:*", "s3:LifecycleExpiration:Delete")


def test_filters_and_events_select_targets() -> None:
    doc = n.validate({"LambdaFunctionConfigurations": [
        lambda_config(["s3:ObjectCreated:*"], prefix="photos/", suffix=".jpg", id="jpgs"),
        lambda_config(["s3:ObjectRemoved:*"], id="gone")]})
    targets = n.compile_config(doc).targets
    wanted = {(t.id, e, k) for t in targets for e, k in [
        ("ObjectCreated:Put", "photos/a.jpg"), ("ObjectCreated:Copy", "photos/a.jpg"),
        ("ObjectCreated:Put", "photos/a.png"), ("ObjectCreated:Put", "other/a.jpg"),
        ("ObjectRemoved:Delete", "x"), ("ObjectRemoved:DeleteMarkerCreated", "photos/a.jpg"),
        ("ObjectTagging:Put", "photos/a.jpg")] if t.wants(e, k)}
    assert wanted == {("jpgs", "ObjectCreated:Put", "photos/a.jpg"), ("jpgs", "ObjectCreated:Copy", "photos/a.jpg"),
                      ("gone", "ObjectRemoved:Delete", "x"),
                      ("gone", "ObjectRemoved:DeleteMarkerCreated", "photos/a.jpg")}


def test_a_configuration_without_an_id_gets_one_and_keeps_a_given_one() -> None:
    doc = n.validate({"LambdaFunctionConfigurations": [lambda_config(["s3:ObjectCreated:*"]),
                                                       lambda_config(["s3:ObjectRemoved:*"], id="mine")],
                      "EventBridgeConfiguration": {}})
    ids = [c["Id"] for c in doc["LambdaFunctionConfigurations"]]
    assert ids[0] and ids[1] == "mine"
    assert doc["EventBridgeConfiguration"] == {}
    assert n.compile_config(doc).eventbridge


@pytest.mark.parametrize("configs", [
    [lambda_config(["s3:ObjectCreated:*"]), lambda_config(["s3:ObjectCreated:Put"], arn=FN + "2")],
    [lambda_config(["s3:ObjectCreated:Put"], prefix="a/"), lambda_config(["s3:ObjectCreated:Put"], prefix="a/b")],
    [lambda_config(["s3:ObjectCreated:*"], suffix=".jpg"), lambda_config(["s3:ObjectCreated:*"], suffix="x.jpg")],
])
def test_overlapping_configurations_are_refused(configs: list[dict[str, Any]]) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        n.validate({"LambdaFunctionConfigurations": configs})
    assert "Configurations overlap" in caught.value.message


def test_configurations_that_do_not_overlap_are_accepted() -> None:
    n.validate({"LambdaFunctionConfigurations": [
        lambda_config(["s3:ObjectCreated:*"], prefix="a/"), lambda_config(["s3:ObjectCreated:*"], prefix="b/"),
        lambda_config(["s3:ObjectRemoved:*"])]})
    # same prefix, different suffixes: the filters do not overlap
    n.validate({"LambdaFunctionConfigurations": [
        lambda_config(["s3:ObjectCreated:*"], prefix="a/", suffix=".jpg"),
        lambda_config(["s3:ObjectCreated:*"], prefix="a/", suffix=".png")]})


@pytest.mark.parametrize("doc, message", [
    ({"LambdaFunctionConfigurations": [lambda_config(["s3:ObjectCreated:Nope"])]}, "not supported"),
    ({"LambdaFunctionConfigurations": [lambda_config([])]}, "not supported"),
    ({"LambdaFunctionConfigurations": [{"LambdaFunctionArn": FN, "Events": ["s3:ObjectCreated:*"], "Filter": {
        "Key": {"FilterRules": [{"Name": "prefix", "Value": "a"}, {"Name": "Prefix", "Value": "b"}]}}}]},
     "more than one prefix"),
    ({"LambdaFunctionConfigurations": [{"LambdaFunctionArn": FN, "Events": ["s3:ObjectCreated:*"], "Filter": {
        "Key": {"FilterRules": [{"Name": "middle", "Value": "a"}]}}}]}, "prefix or suffix"),
    ({"LambdaFunctionConfigurations": [lambda_config(["s3:ObjectCreated:*"], arn="not-an-arn")]},
     "Unable to validate"),
    ({"QueueConfigurations": [{"QueueArn": "arn:aws:sqs:us-east-1:000000000000:q",
                               "Events": ["s3:ObjectCreated:*"]}]}, "Unable to validate"),
])
def test_bad_configurations_get_s3s_invalid_argument(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        n.validate(doc)
    assert message in caught.value.message
    assert caught.value.status == 400


def test_a_missing_function_cannot_be_validated() -> None:
    with pytest.raises(errors.InvalidArgument, match="Unable to validate"):
        n.validate({"LambdaFunctionConfigurations": [lambda_config(["s3:ObjectCreated:*"])]}, lambda arn: False)
    n.validate({"LambdaFunctionConfigurations": [lambda_config(["s3:ObjectCreated:*"])]}, lambda arn: True)


def test_a_nats_subject_is_a_destination() -> None:
    doc = n.validate({"QueueConfigurations": [{"QueueArn": "arn:kambda:nats:::kambda.s3.notify.uploads",
                                               "Events": ["s3:ObjectCreated:*"]}]})
    (target,) = n.compile_config(doc).targets
    assert (target.kind, target.arn) == ("nats", "arn:kambda:nats:::kambda.s3.notify.uploads")
    for subject in ("app.uploads", "kambda.s3.notify.>", "kambda.s3.notify.", "kambda.s3.notify.a..b"):
        with pytest.raises(errors.InvalidArgument):
            n.validate({"QueueConfigurations": [{"QueueArn": f"arn:kambda:nats:::{subject}",
                                                 "Events": ["s3:ObjectCreated:*"]}]})


# -- the records ------------------------------------------------------------------------------------------------


def test_a_created_record_has_aws_shape() -> None:
    rec = n.record(change(version_id="3sL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"), "cfg", REGION, ACCOUNT)
    assert rec == {
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION,
        "eventTime": "2023-11-14T22:13:20.250Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AKIDEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "10.0.0.7"},
        "responseElements": {"x-amz-request-id": "REQ1", "x-amz-id-2": rec["responseElements"]["x-amz-id-2"]},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "cfg",
               "bucket": {"name": "bkt", "ownerIdentity": {"principalId": ACCOUNT}, "arn": "arn:aws:s3:::bkt"},
               "object": {"key": "photos/red+flower.jpg", "size": 5, "eTag": "b1946ac92492d2347c6235b4d2611184",
                          "versionId": "3sL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", "sequencer": "0000000000000001"}},
    }
    assert rec["responseElements"]["x-amz-id-2"]


def test_keys_are_form_urlencoded() -> None:
    assert n.encode_key("red flower.jpg") == "red+flower.jpg"
    assert n.encode_key("a/b(1)+ü.txt") == "a/b%281%29%2B%C3%BC.txt"


def test_removed_records_carry_no_size_nor_etag_and_unversioned_ones_no_version() -> None:
    obj = n.record(change("ObjectRemoved:Delete"), "c", REGION, ACCOUNT)["s3"]["object"]
    assert obj == {"key": "photos/red+flower.jpg", "sequencer": "0000000000000001"}
    marker = n.record(change("ObjectRemoved:DeleteMarkerCreated", version_id="v2"), "c", REGION, ACCOUNT)
    assert marker["s3"]["object"] == {"key": "photos/red+flower.jpg", "versionId": "v2",
                                      "sequencer": "0000000000000001"}


def test_lifecycle_records_name_s3_itself() -> None:
    rec = n.record(Change("LifecycleExpiration:Delete", meta(), None, T0), "c", REGION, ACCOUNT)
    assert rec["eventVersion"] == "2.3"
    assert rec["userIdentity"] == {"principalId": "s3.amazonaws.com"}
    assert rec["requestParameters"] == {"sourceIPAddress": "s3.amazonaws.com"}


def test_eventbridge_events_have_aws_detail() -> None:
    event = n.bridge_event(change(version_id="v1"), REGION, ACCOUNT)
    assert event is not None
    assert {k: event[k] for k in ("version", "detail-type", "source", "account", "time", "region", "resources")} \
        == {"version": "0", "detail-type": "Object Created", "source": "aws.s3", "account": ACCOUNT,
            "time": "2023-11-14T22:13:20Z", "region": REGION, "resources": ["arn:aws:s3:::bkt"]}
    assert event["detail"] == {
        "version": "0", "bucket": {"name": "bkt"},
        "object": {"key": "photos/red flower.jpg", "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184",
                   "version-id": "v1", "sequencer": "0000000000000001"},
        "request-id": "REQ1", "requester": ACCOUNT, "source-ip-address": "10.0.0.7", "reason": "PutObject"}
    deleted = n.bridge_event(change("ObjectRemoved:DeleteMarkerCreated", version_id="v2"), REGION, ACCOUNT)
    assert deleted is not None and deleted["detail-type"] == "Object Deleted"
    assert deleted["detail"]["deletion-type"] == "Delete Marker Created"
    assert deleted["detail"]["reason"] == "DeleteObject"
    tagged = n.bridge_event(change("ObjectTagging:Put"), REGION, ACCOUNT)
    assert tagged is not None and tagged["detail-type"] == "Object Tags Added"


MINIO = {
    "EventName": "s3:ObjectCreated:Put", "Key": "images/my photo.jpg",
    "Records": [{
        "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "", "eventTime": "2019-09-10T17:41:54Z",
        "eventName": "s3:ObjectCreated:Put", "userIdentity": {"principalId": "minio"},
        "requestParameters": {"accessKey": "minio", "region": "", "sourceIPAddress": "192.168.1.6"},
        "responseElements": {"content-length": "0", "x-amz-request-id": "15C31A1B1E5C1C1F",
                             "x-minio-deployment-id": "3d2f8a1b", "x-minio-origin-endpoint": "http://10.0.0.1:9000"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "Config",
               "bucket": {"name": "images", "ownerIdentity": {"principalId": "minio"}, "arn": "arn:aws:s3:::images"},
               "object": {"key": "my+photo.jpg", "size": 1024, "eTag": "37b51d194a7513e45b56f6524f2d51f2",
                          "contentType": "image/jpeg", "userMetadata": {"content-type": "image/jpeg"},
                          "sequencer": "15C31A1B1E5C1C1F"}},
        "source": {"host": "192.168.1.6", "port": "", "userAgent": "MinIO (linux; amd64) minio-go/v7"}}],
}
CEPH = {"Records": [{
    "eventVersion": "2.1", "eventSource": "ceph:s3", "awsRegion": "us-east-1",
    "eventTime": "2019-11-22T13:47:35.124724Z", "eventName": "ObjectRemoved:Delete",
    "userIdentity": {"principalId": "tester"}, "requestParameters": {"sourceIPAddress": ""},
    "responseElements": {"x-amz-request-id": "503a4c37-85eb-47cd-8681-2817e80b4281.5330.903595",
                         "x-amz-id-2": "14d2-zone1-zonegroup1"},
    "s3": {"s3SchemaVersion": "1.0", "configurationId": "mynotif1",
           "bucket": {"name": "mybucket1", "ownerIdentity": {"principalId": "tester"},
                      "arn": "arn:aws:s3:us-east-1::mybucket1", "id": "503a4c37-85eb-47cd-8681-2817e80b4281.5332.38"},
           "object": {"key": "myimage1.jpg", "size": "1024", "eTag": "37b51d194a7513e45b56f6524f2d51f2",
                      "versionId": "", "sequencer": "F7E6D75DC742D108", "metadata": [], "tags": []}},
    "eventId": "", "opaqueData": "me@example.com"}]}


def test_external_payloads_give_their_records() -> None:
    (minio,) = n.external_records(MINIO)
    assert n.external_event(minio) == ("ObjectCreated:Put", "my photo.jpg")
    (ceph,) = n.external_records(CEPH)
    assert n.external_event(ceph) == ("ObjectRemoved:Delete", "myimage1.jpg")
    for bad in ([], {"Records": "x"}, {"Records": [{"eventName": "x"}]}, {"EventName": "s3:ObjectCreated:Put"}):
        with pytest.raises(ValueError):
            n.external_records(bad)


# -- the outbox, against a real nats-server and SQLite ----------------------------------------------------------


class Rig:
    def __init__(self, nc: NATS, js: JetStreamContext, db: Database) -> None:
        self.nc, self.js, self.db = nc, js, db
        self.fail = False
        self.functions = {"fn"}

        async def store_async(subject: str, data: bytes, headers: dict[str, str]) -> None:
            if self.fail:
                raise ConnectionError("the event queue is away")
            await js.publish(subject, data, headers=headers)

        async def resolve(arn: str) -> tuple[str, str] | None:
            name = arn.split(":")[6]
            return (name, "$LATEST") if name in self.functions else None

        self.notes = n.Notifications(db, nc, js, store_async, resolve, Arns(REGION, ACCOUNT), grace_s=0.0,
                                     poll_s=0.05)
        self.store = Store(js, db, region=REGION)
        self.notes.attach(self.store)

    async def commit(self, *changes: Change, fail: bool = False) -> None:
        def work(tx: Tx) -> None:
            for c in changes:
                self.notes.on_commit(tx, c)
            if fail:
                raise RuntimeError("the change's transaction fails")

        await self.db.write(work)

    async def messages(self, stream: str, subject: str) -> list[bytes]:
        info = await self.js.stream_info(stream, subjects_filter=subject)
        count = (info.state.subjects or {}).get(subject, 0)
        if not count:
            return []
        # a pull consumer that acknowledges nothing: work-queue streams allow no other kind
        sub = await self.js.pull_subscribe(subject, stream=stream)
        try:
            got: list[bytes] = []
            while len(got) < count:
                got += [m.data for m in await sub.fetch(count - len(got), timeout=5)]
            return got
        finally:
            await sub.unsubscribe()

    async def invocations(self, function: str = "fn") -> list[dict[str, Any]]:
        raw = await self.messages(bus.ASYNC_STREAM, bus.async_subject(function, "$LATEST"))
        return [json.loads(Invocation.FromString(m).payload) for m in raw]

    async def outbox(self) -> int:
        return int((await self.db.read(lambda tx: tx.execute("SELECT COUNT(*) FROM s3_notify_outbox")))[0][0])


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture(params=["sqlite", "postgresql"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    server = NatsServer(tmp_path / "nats")
    url = await server.start()
    nc = await nats.connect(url)
    js = nc.jetstream()
    await bus.ensure_platform(js)
    if request.param == "sqlite":
        db = Database.open(None, tmp_path / "objects.db")
    else:
        db = Database.open(fresh_database(request.getfixturevalue("pg_dsn"), unique("s3n")), tmp_path)
    made = Rig(nc, js, db)
    await made.store.start(background=False)
    await made.notes.start(relay=False)
    try:
        yield made
    finally:
        await made.notes.stop()
        await made.store.close()
        await db.close()
        await nc.close()
        await server.stop()


async def configure(rig: Rig, doc: dict[str, Any], bucket: str = "bkt") -> None:
    with contextlib.suppress(errors.BucketAlreadyOwnedByYou):
        await rig.store.create_bucket(bucket, REGION)
    await rig.store.put_config(bucket, n.KIND, n.validate(doc))


async def test_a_committed_change_is_stored_before_publish_returns(rig: Rig) -> None:
    await configure(rig, {"LambdaFunctionConfigurations": [lambda_config(["s3:ObjectCreated:*"], id="c1")]})
    await rig.commit(change())
    assert await rig.outbox() == 1
    assert await rig.notes.publish("REQ1") == 1
    (payload,) = await rig.invocations()
    assert payload["Records"][0]["s3"]["configurationId"] == "c1"
    assert payload["Records"][0]["s3"]["object"]["key"] == "photos/red+flower.jpg"
    assert await rig.outbox() == 0
    assert await rig.notes.publish("REQ1") == 0  # nothing twice


async def test_a_change_that_does_not_match_makes_no_row(rig: Rig) -> None:
    await configure(rig, {"LambdaFunctionConfigurations": [lambda_config(["s3:ObjectRemoved:*"])]})
    await rig.commit(change(), change(bucket="other"))
    assert await rig.outbox() == 0
    assert await rig.notes.publish("REQ1") == 0


async def test_a_rolled_back_change_notifies_nothing(rig: Rig) -> None:
    await configure(rig, {"LambdaFunctionConfigurations": [lambda_config(["s3:ObjectCreated:*"])]})
    with pytest.raises(RuntimeError):
        await rig.commit(change(), fail=True)
    assert await rig.outbox() == 0
    assert await rig.notes.publish("REQ1") == 0
    assert await rig.invocations() == []


async def test_a_failed_publish_answers_503_and_the_relay_delivers_later(rig: Rig) -> None:
    await configure(rig, {"LambdaFunctionConfigurations": [lambda_config(["s3:ObjectCreated:*"])]})
    await rig.commit(change())
    rig.fail = True
    with pytest.raises(errors.ServiceUnavailable) as caught:
        await rig.notes.publish("REQ1")
    assert caught.value.status == 503
    assert await rig.outbox() == 1
    rig.fail = False
    assert await rig.notes.publish_all() == 1
    assert len(await rig.invocations()) == 1
    assert await rig.outbox() == 0


async def test_a_republished_row_is_dropped_by_jetstream(rig: Rig) -> None:
    """A crash between the publish and the delete: the relay publishes the row again, with the same id."""
    await configure(rig, {"LambdaFunctionConfigurations": [lambda_config(["s3:ObjectCreated:*"])]})
    await rig.commit(change())
    (row,) = await rig.db.read(lambda tx: n._rows(tx, "1 = 1", ()))
    await rig.notes._deliver(row)  # published, then "crashed" before the delete
    assert await rig.notes.publish_all() == 1
    assert len(await rig.invocations()) == 1


async def test_the_relay_sends_what_no_request_published(rig: Rig) -> None:
    await configure(rig, {"LambdaFunctionConfigurations": [lambda_config(["s3:LifecycleExpiration:*"])]})
    await rig.commit(Change("LifecycleExpiration:Delete", meta(), None, T0))  # the expiry sweep has no request
    # A long grace: the rows of no request go at once all the same.
    relay = n.Notifications(rig.db, rig.nc, rig.js, rig.notes._store_async, rig.notes._resolve,
                            Arns(REGION, ACCOUNT), grace_s=3600.0, poll_s=0.05)
    await relay.start(inbox=False)
    try:
        await until(lambda: relay.published == 1, what="the relay to publish")
    finally:
        await relay.stop()
    (payload,) = await rig.invocations()
    assert payload["Records"][0]["eventName"] == "LifecycleExpiration:Delete"


async def test_eventbridge_and_nats_destinations(rig: Rig) -> None:
    await configure(rig, {"QueueConfigurations": [{"QueueArn": "arn:kambda:nats:::kambda.s3.notify.uploads",
                                                   "Events": ["s3:ObjectCreated:*"]}],
                          "EventBridgeConfiguration": {}})
    await rig.commit(change(), change("ObjectRemoved:Delete"))
    assert await rig.notes.publish("REQ1") == 3
    (created,) = [json.loads(m) for m in await rig.messages(bus.S3_NOTIFY_STREAM, "kambda.s3.notify.uploads")]
    assert created["Records"][0]["eventName"] == "ObjectCreated:Put"
    events = [json.loads(m) for m in await rig.messages(bus.EVENTS_STREAM, bus.events_subject("default"))]
    assert [e["detail-type"] for e in events] == ["Object Created", "Object Deleted"]


async def test_a_missing_function_is_dropped_not_retried_forever(rig: Rig) -> None:
    await configure(rig, {"LambdaFunctionConfigurations": [lambda_config(["s3:ObjectCreated:*"])]})
    await rig.commit(change())
    rig.functions.clear()
    assert await rig.notes.publish("REQ1") == 1
    assert await rig.outbox() == 0
    assert await rig.invocations() == []


async def test_a_row_that_can_never_go_is_dropped_not_answered_503(rig: Rig) -> None:
    await rig.db.write(lambda tx: rig.notes._insert(tx, "R9", [("lambda", "arn:aws:lambda:us-east-1:1:function:x",
                                                                 b"{}")]))
    assert await rig.notes.publish("R9") == 1
    assert await rig.outbox() == 0


def test_an_oversized_external_record_is_refused() -> None:
    big = {"Records": [{**MINIO["Records"][0], "padding": "x" * n.MAX_RECORD}]}
    with pytest.raises(ValueError, match="larger"):
        n.external_records(big)


async def test_external_records_reach_the_configured_function(rig: Rig) -> None:
    await configure(rig, {"LambdaFunctionConfigurations": [lambda_config(["s3:ObjectCreated:*"], suffix=".jpg")]},
                    bucket="images")
    await configure(rig, {"LambdaFunctionConfigurations": [lambda_config(["s3:ObjectRemoved:*"])]},
                    bucket="mybucket1")
    assert await rig.notes.accept_external("images", MINIO, "ext-1") == 1
    assert await rig.notes.accept_external("mybucket1", CEPH, "ext-2") == 1
    assert await rig.notes.accept_external("mybucket1", MINIO, "ext-3") == 0  # a created event: not configured
    assert [p["Records"] for p in await rig.invocations()] == [MINIO["Records"], CEPH["Records"]]


async def test_a_redelivered_inbox_message_notifies_once(rig: Rig) -> None:
    await configure(rig, {"LambdaFunctionConfigurations": [lambda_config(["s3:ObjectCreated:*"])]},
                    bucket="images")
    for _ in range(2):  # acknowledged too late, the message comes again: same stream sequence, same ids
        assert await rig.notes.accept_external("images", MINIO, "inbox-7", once=True) == 1
    assert len(await rig.invocations()) == 1


async def test_minios_nats_target_reaches_the_function_through_the_inbox(rig: Rig) -> None:
    await configure(rig, {"LambdaFunctionConfigurations": [lambda_config(["s3:ObjectCreated:*"])]},
                    bucket="images")
    await rig.js.publish(n.INBOX_PREFIX + "images", json.dumps(MINIO).encode())
    await rig.nc.publish(n.INBOX_PREFIX + "images", b"not json")  # dropped, the next one still goes
    await rig.js.publish(n.INBOX_PREFIX + "images", json.dumps(MINIO).encode())

    await until(lambda: rig.notes.published == 2, what="the inbox to be delivered")
    assert [p["Records"] for p in await rig.invocations()] == [MINIO["Records"]] * 2



async def test_the_stores_changes_make_aws_records(rig: Rig) -> None:
    """Every kind of change the store commits, through on_commit, published before the call returns."""
    await configure(rig, {"LambdaFunctionConfigurations": [lambda_config(
        ["s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:ObjectTagging:*"], id="all")]})
    await rig.store.set_versioning("bkt", "Enabled")
    actors = iter(Actor("AKID", "10.1.2.3", f"R{i}") for i in range(100))

    async def act(call: Any) -> Any:
        published = rig.notes.published
        result = await call(next(actors))
        assert rig.notes.published == published + 1  # stored on JetStream before the store's call returned
        return result

    put = await act(lambda a: rig.store.put("bkt", "a b.txt", b"hello", actor=a))
    copy = await act(lambda a: rig.store.copy(put.meta, "bkt", "c.txt", actor=a))
    upload = await rig.store.create_upload("bkt", "m.bin")
    part = await rig.store.put_part(upload, 1, b"x" * 10)
    done = await act(lambda a: rig.store.complete(upload, [(1, part.etag)], actor=a))
    await act(lambda a: rig.store.set_tags("bkt", "a b.txt", None, {"k": "v"}, actor=a))
    await act(lambda a: rig.store.set_tags("bkt", "a b.txt", None, None, actor=a))
    marker, _ = await act(lambda a: rig.store.delete("bkt", "a b.txt", actor=a))
    await act(lambda a: rig.store.delete("bkt", "c.txt", copy.meta.version_id, actor=a))
    await act(lambda a: rig.store.put("bkt", "p.txt", b"post", event="ObjectCreated:Post", actor=a))
    records = [p["Records"][0] for p in await rig.invocations()]
    assert [r["eventName"] for r in records] == [
        "ObjectCreated:Put", "ObjectCreated:Copy", "ObjectCreated:CompleteMultipartUpload", "ObjectTagging:Put",
        "ObjectTagging:Delete", "ObjectRemoved:DeleteMarkerCreated", "ObjectRemoved:Delete", "ObjectCreated:Post"]
    assert [r["responseElements"]["x-amz-request-id"] for r in records] == [f"R{i}" for i in range(8)]
    objects = [r["s3"]["object"] for r in records]
    assert objects[0] == {"key": "a+b.txt", "size": 5, "eTag": put.meta.etag.strip('"'),
                          "versionId": put.meta.version_id, "sequencer": put.meta.sequencer}
    assert objects[2]["eTag"] == done.meta.etag.strip('"') and objects[2]["eTag"].endswith("-1")
    assert objects[5] == {"key": "a+b.txt", "versionId": marker.version_id, "sequencer": objects[5]["sequencer"]}
    assert objects[6]["versionId"] == copy.meta.version_id
    sequencers = [o["sequencer"] for o in objects if "sequencer" in o]
    assert sequencers == sorted(sequencers) and len(set(sequencers)) == len(sequencers)
    assert await rig.outbox() == 0


async def test_a_lifecycle_expiry_goes_with_the_relay_at_once(rig: Rig) -> None:
    await configure(rig, {"LambdaFunctionConfigurations": [lambda_config(["s3:LifecycleExpiration:*"])]})
    await rig.store.put("bkt", "old", b"x", actor=Actor("a", "b", "R1"))
    relay = n.Notifications(rig.db, rig.nc, rig.js, rig.notes._store_async, rig.notes._resolve,
                            Arns(REGION, ACCOUNT), grace_s=3600.0, poll_s=3600.0)
    relay.attach(rig.store)  # the relay's own nudge, as in a gateway: no poll to wait for
    await relay.start(inbox=False)
    try:
        await until(lambda: relay._held_until > 0, what="the relay's lease")
        await rig.store.delete("bkt", "old", "null", event_prefix="LifecycleExpiration")  # as the sweep does
        await until(lambda: relay.published == 1, what="the expiry's notification")
    finally:
        await relay.stop()
    (payload,) = await rig.invocations()
    (rec,) = payload["Records"]
    assert rec["eventName"] == "LifecycleExpiration:Delete" and rec["eventVersion"] == "2.3"
    assert rec["userIdentity"] == {"principalId": "s3.amazonaws.com"}


async def test_a_refused_write_leaves_nothing_behind(rig: Rig) -> None:
    await configure(rig, {"LambdaFunctionConfigurations": [lambda_config(["s3:ObjectCreated:*"])]})
    await rig.store.put("bkt", "k", b"x", actor=Actor("a", "b", "R1"))
    with pytest.raises(errors.PreconditionFailed):
        await rig.store.put("bkt", "k", b"y", conditions=Conditions(if_none_match="*"), actor=Actor("a", "b", "R2"))
    assert rig.notes._dirty == set() and await rig.outbox() == 0
    assert len(await rig.invocations()) == 1

    async def fails_after_its_hook(actor: Actor) -> None:  # a transaction that fails once on_commit ran
        await rig.commit(Change("ObjectCreated:Put", meta(), actor, T0), fail=True)

    with pytest.raises(RuntimeError):
        await rig.notes._publishing(fails_after_its_hook)(actor=Actor("a", "b", "R3"))
    assert rig.notes._dirty == set() and await rig.outbox() == 0


async def test_a_deleted_bucket_takes_its_configuration_along(rig: Rig) -> None:
    await configure(rig, {"LambdaFunctionConfigurations": [lambda_config(["s3:ObjectCreated:*"])]})
    await rig.store.delete_bucket("bkt")
    await rig.store.create_bucket("bkt", REGION)
    await rig.store.put("bkt", "k", b"x", actor=Actor("a", "b", "R1"))
    assert await rig.outbox() == 0


# -- the platform: boto3 against a running kambda, a function that writes what it gets to a ledger --------------

LEDGER = """
import json, os
def handler(event, context):
    with open(os.environ["LEDGER"], "a") as f:
        for r in event.get("Records", [event]):
            f.write(json.dumps(r) + "\\n")
    return {}
"""


def s3_client(platform: Platform) -> Any:
    return boto3.client("s3", endpoint_url=platform.url, region_name=REGION, aws_access_key_id="x",
                        aws_secret_access_key="x",
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def ledger_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def ledger_function(platform: Platform, create: Any, tmp_path: Path) -> Any:
    def make() -> tuple[str, Path]:
        ledger = tmp_path / f"{unique('ledger')}.jsonl"
        name = create(LEDGER, Environment={"Variables": {"LEDGER": str(ledger)}})
        platform.lambda_client().add_permission(FunctionName=name, StatementId="s3", Action="lambda:InvokeFunction",
                                                Principal="s3.amazonaws.com")
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}", ledger

    return make


def test_every_event_type_reaches_the_function_once_in_aws_shape(platform: Platform, ledger_function: Any) -> None:
    s3 = s3_client(platform)
    arn, ledger = ledger_function()
    bucket = unique("notes")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    config = {"LambdaFunctionConfigurations": [{"Id": "all", "LambdaFunctionArn": arn, "Events": [
        "s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:ObjectTagging:*"]}]}
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
    got = s3.get_bucket_notification_configuration(Bucket=bucket)
    assert got["LambdaFunctionConfigurations"] == [{"Id": "all", "LambdaFunctionArn": arn, "Events": [
        "s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:ObjectTagging:*"]}]

    key = "in/red flower.txt"
    put = s3.put_object(Bucket=bucket, Key=key, Body=b"hello")
    copy = s3.copy_object(Bucket=bucket, Key="copy.txt", CopySource={"Bucket": bucket, "Key": key})
    upload = s3.create_multipart_upload(Bucket=bucket, Key="multi.bin")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="multi.bin", UploadId=upload, PartNumber=1, Body=b"x" * 10)
    done = s3.complete_multipart_upload(Bucket=bucket, Key="multi.bin", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})
    s3.delete_object_tagging(Bucket=bucket, Key=key)
    marker = s3.delete_object(Bucket=bucket, Key=key)
    s3.delete_object(Bucket=bucket, Key="copy.txt", VersionId=copy["VersionId"])
    expected = ["ObjectCreated:Put", "ObjectCreated:Copy", "ObjectCreated:CompleteMultipartUpload",
                "ObjectTagging:Put", "ObjectTagging:Delete", "ObjectRemoved:DeleteMarkerCreated",
                "ObjectRemoved:Delete"]
    wait_for(lambda: len(ledger_of(ledger)) >= len(expected), timeout=60, what="every notification")
    records = ledger_of(ledger)
    assert sorted(r["eventName"] for r in records) == sorted(expected)
    by_name = {r["eventName"]: r for r in records}
    first = by_name["ObjectCreated:Put"]
    assert {k: first[k] for k in ("eventVersion", "eventSource", "awsRegion", "eventName")} == {
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION, "eventName": "ObjectCreated:Put"}
    assert first["s3"]["configurationId"] == "all"
    assert first["s3"]["bucket"]["name"] == bucket and first["s3"]["bucket"]["arn"] == f"arn:aws:s3:::{bucket}"
    obj = first["s3"]["object"]
    assert obj["key"] == "in/red+flower.txt" and obj["size"] == 5
    assert obj["eTag"] == put["ETag"].strip('"') and obj["versionId"] == put["VersionId"]
    assert first["responseElements"]["x-amz-request-id"] == put["ResponseMetadata"]["RequestId"]
    assert by_name["ObjectCreated:CompleteMultipartUpload"]["s3"]["object"]["eTag"] == done["ETag"].strip('"')
    assert by_name["ObjectRemoved:DeleteMarkerCreated"]["s3"]["object"]["versionId"] == marker["VersionId"]
    assert by_name["ObjectRemoved:Delete"]["s3"]["object"]["versionId"] == copy["VersionId"]
    sequencers = [r["s3"]["object"]["sequencer"] for r in records if "sequencer" in r["s3"]["object"]]
    assert len(set(sequencers)) == len(sequencers)


def test_filters_pick_the_function(platform: Platform, ledger_function: Any) -> None:
    s3 = s3_client(platform)
    (jpg_arn, jpgs), (log_arn, logs) = ledger_function(), ledger_function()
    bucket = unique("filters")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [
            {"LambdaFunctionArn": jpg_arn, "Events": ["s3:ObjectCreated:Put"],
             "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "img/"},
                                                {"Name": "suffix", "Value": ".jpg"}]}}},
            {"LambdaFunctionArn": log_arn, "Events": ["s3:ObjectCreated:*"],
             "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "logs/"}]}}}]})
    for key in ("img/a.jpg", "img/a.png", "b.jpg", "logs/1", "logs/2", "other"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    s3.put_object(Bucket=bucket, Key="img/last.jpg", Body=b"x")
    wait_for(lambda: len(ledger_of(jpgs)) >= 2 and len(ledger_of(logs)) >= 2, timeout=60, what="notifications")
    assert sorted(r["s3"]["object"]["key"] for r in ledger_of(jpgs)) == ["img/a.jpg", "img/last.jpg"]
    assert sorted(r["s3"]["object"]["key"] for r in ledger_of(logs)) == ["logs/1", "logs/2"]


def test_a_browser_post_upload_is_object_created_post(platform: Platform, ledger_function: Any) -> None:
    s3 = s3_client(platform)
    arn, ledger = ledger_function()
    bucket = unique("posted")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:Post"]}]})
    post = s3.generate_presigned_post(bucket, "form/${filename}", ExpiresIn=600)
    boundary = uuid.uuid4().hex
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode()
                    for k, v in post["fields"].items())
    body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n"
             f"posted\r\n--{boundary}--\r\n").encode()
    request = urllib.request.Request(post["url"], data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 204
    s3.put_object(Bucket=bucket, Key="form/not-a-post.txt", Body=b"x")  # a PUT: not asked for
    wait_for(lambda: ledger_of(ledger), timeout=60, what="the POST's notification")
    (record,) = ledger_of(ledger)
    assert record["eventName"] == "ObjectCreated:Post"
    assert record["s3"]["object"]["key"] == "form/a.txt" and record["s3"]["object"]["size"] == 6


def test_a_failing_function_gets_the_async_paths_destination(platform: Platform, create: Any,
                                                                         ledger_function: Any, tmp_path: Path) -> None:
    s3 = s3_client(platform)
    lam = platform.lambda_client()
    destination, failures = ledger_function()
    attempts = tmp_path / "attempts.jsonl"
    failing = create(LEDGER.replace("    return {}", "    raise RuntimeError('no')"),
                     Environment={"Variables": {"LEDGER": str(attempts)}})
    lam.put_function_event_invoke_config(FunctionName=failing, MaximumRetryAttempts=0, DestinationConfig={
        "OnFailure": {"Destination": destination}})
    bucket = unique("failing")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [{"LambdaFunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{failing}",
                                          "Events": ["s3:ObjectCreated:*"]}]})
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    wait_for(lambda: ledger_of(failures), timeout=120, what="the on-failure destination")
    (failure,) = ledger_of(failures)
    assert failure["requestContext"]["condition"] == "RetriesExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 1
    assert failure["requestPayload"]["Records"][0]["eventName"] == "ObjectCreated:Put"
    assert len(ledger_of(attempts)) == 1  # no retry asked for (the platform's retries wait 60 s)


def test_delete_objects_notifies_each_key_once(platform: Platform, ledger_function: Any) -> None:
    s3 = s3_client(platform)
    arn, ledger = ledger_function()
    bucket = unique("multidel")
    s3.create_bucket(Bucket=bucket)
    for key in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn, "Events": ["s3:ObjectRemoved:Delete"]}]})
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in ("a", "b", "c")]})
    assert len(answer["Deleted"]) == 3
    wait_for(lambda: len(ledger_of(ledger)) >= 3, timeout=60, what="three notifications")
    records = ledger_of(ledger)
    assert sorted(r["s3"]["object"]["key"] for r in records) == ["a", "b", "c"]
    assert {r["responseElements"]["x-amz-request-id"] for r in records} == {answer["ResponseMetadata"]["RequestId"]}


def test_bad_configurations_are_refused_as_s3_refuses_them(platform: Platform, ledger_function: Any) -> None:
    s3 = s3_client(platform)
    arn, _ = ledger_function()
    bucket = unique("bad")
    s3.create_bucket(Bucket=bucket)
    for config in (
        {"LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn + "-missing", "Events": ["s3:ObjectCreated:*"]}]},
        {"LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"]},
                                          {"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:Put"]}]},
    ):
        with pytest.raises(ClientError) as caught:
            s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
        assert caught.value.response["Error"]["Code"] == "InvalidArgument"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert s3.get_bucket_notification_configuration(Bucket=bucket).get("LambdaFunctionConfigurations") is None
    with pytest.raises(ClientError) as missing:
        s3.get_bucket_notification_configuration(Bucket=unique("nobucket"))
    assert missing.value.response["Error"]["Code"] == "NoSuchBucket"


def test_eventbridge_configuration_reaches_a_rules_target(platform: Platform, ledger_function: Any) -> None:
    s3 = s3_client(platform)
    arn, ledger = ledger_function()
    bucket = unique("bridge")
    events = boto3.client("events", endpoint_url=platform.url, region_name=REGION, aws_access_key_id="x",
                          aws_secret_access_key="x")
    rule = unique("s3rule")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["aws.s3"], "detail-type": ["Object Created"],
                                                        "detail": {"bucket": {"name": [bucket]}}}))
    events.put_targets(Rule=rule, Targets=[{"Id": "t", "Arn": arn}])
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "EventBridgeConfiguration": {}})
    assert "EventBridgeConfiguration" in s3.get_bucket_notification_configuration(Bucket=bucket)
    put = s3.put_object(Bucket=bucket, Key="a b.txt", Body=b"12345")
    s3.delete_object(Bucket=bucket, Key="a b.txt")  # an "Object Deleted": not what the rule asks for
    wait_for(lambda: ledger_of(ledger), timeout=60, what="the event")
    (event,) = ledger_of(ledger)
    assert event["source"] == "aws.s3" and event["detail-type"] == "Object Created"
    assert event["resources"] == [f"arn:aws:s3:::{bucket}"]
    assert event["detail"]["object"] == {"key": "a b.txt", "size": 5, "etag": put["ETag"].strip('"'),
                                         "sequencer": event["detail"]["object"]["sequencer"]}
    assert event["detail"]["reason"] == "PutObject"
    events.remove_targets(Rule=rule, Ids=["t"])
    events.delete_rule(Name=rule)


@pytest.mark.parametrize("payload", [MINIO, CEPH], ids=["minio", "ceph"])
def test_an_external_store_triggers_a_function(platform: Platform, ledger_function: Any,
                                               payload: dict[str, Any]) -> None:
    s3 = s3_client(platform)
    arn, ledger = ledger_function()
    bucket = unique("external")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*",
                                                                               "s3:ObjectRemoved:*"]}]})
    request = urllib.request.Request(f"{platform.url}/_kambda/v1/s3-events/{bucket}", method="POST",
                                     data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read()) == {"delivered": 1}
    wait_for(lambda: ledger_of(ledger), timeout=60, what="the record")
    assert ledger_of(ledger) == payload["Records"]
    bad = urllib.request.Request(f"{platform.url}/_kambda/v1/s3-events/{bucket}", method="POST", data=b"{}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(bad, timeout=30)
    with refused.value:
        assert refused.value.code == 400
        assert refused.value.headers["x-amzn-ErrorType"] == "InvalidParameterValueException"
        assert "Not S3 event records" in json.loads(refused.value.read())["message"]


def test_kill_9_of_the_gateway_loses_no_acknowledged_notification(tmp_path: Path) -> None:
    """Writes go on while the gateway (which holds the outbox) is killed: every acknowledged write is notified at
    least once, once the gateway is back (its relay sends what was committed and not yet published)."""
    platform = Platform(tmp_path / "state").start()
    try:
        lam = platform.lambda_client()
        ledger = tmp_path / "ledger.jsonl"
        name = unique("crashfn")
        lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler",
                            Role="arn:aws:iam::000000000000:role/test", Code={"ZipFile": make_zip({"app.py": LEDGER})},
                            Environment={"Variables": {"LEDGER": str(ledger)}})
        s3 = s3_client(platform)
        bucket = unique("crash")
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
            "LambdaFunctionConfigurations": [{"LambdaFunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"
                                                                   f"{name}", "Events": ["s3:ObjectCreated:*"]}]})
        acked: list[str] = []
        stop = threading.Event()

        def writer(w: int) -> None:
            client = s3_client(platform)
            for i in range(60):
                key = f"w{w}/{i}"
                while not stop.is_set():
                    try:
                        client.put_object(Bucket=bucket, Key=key, Body=b"x")
                        acked.append(key)
                        break
                    except (ClientError, BotoCoreError):
                        time.sleep(0.05)  # not acknowledged: again

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
        for t in threads:
            t.start()
        wait_for(lambda: len(acked) >= 40, timeout=60, what="load")
        assert platform.proc is not None
        (gateway,) = service_pids(platform.proc.pid, "gateway")
        os.kill(gateway, signal.SIGKILL)
        for t in threads:
            t.join(timeout=180)
        stop.set()
        assert len(acked) == 180

        def notified() -> set[str]:
            return {unquote_plus(r["s3"]["object"]["key"]) for r in ledger_of(ledger)}

        wait_for(lambda: set(acked) <= notified(), timeout=120, what="every acknowledged write's notification")
    finally:
        platform.stop()


def test_rows_a_dead_gateway_left_are_sent_once_it_is_back(tmp_path: Path) -> None:
    """A gateway killed between a change's commit and its publish leaves the change's outbox rows: the gateway
    that comes back sends them (the row is written here while the gateway is down, as the commit left it)."""
    platform = Platform(tmp_path / "state").start()
    try:
        ledger = tmp_path / "ledger.jsonl"
        name = unique("relayfn")
        platform.lambda_client().create_function(
            FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="arn:aws:iam::000000000000:role/t",
            Code={"ZipFile": make_zip({"app.py": LEDGER})}, Environment={"Variables": {"LEDGER": str(ledger)}})
        s3 = s3_client(platform)
        s3.create_bucket(Bucket="relayed")
        s3.put_object(Bucket="relayed", Key="before", Body=b"x")  # the database and its outbox exist
        assert platform.proc is not None
        (gateway,) = service_pids(platform.proc.pid, "gateway")
        os.kill(gateway, signal.SIGKILL)
        rec = n.record(change(bucket="relayed", key="left behind"), "cfg", REGION, ACCOUNT)
        db = Database.open(None, tmp_path / "state" / "objects" / "objects.db")
        try:
            db.write_sync(lambda tx: tx.execute(
                "INSERT INTO s3_notify_outbox (msg_id, request_id, kind, target, body, created)"
                " VALUES (?, ?, ?, ?, ?, ?)", ("s3n:left-behind", "REQ-DEAD", "lambda",
                                              f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
                                              json.dumps({"Records": [rec]}).encode(), time.time())))
            wait_for(lambda: ledger_of(ledger), timeout=120, what="the left-behind notification")
            assert ledger_of(ledger) == [rec]
            wait_for(lambda: not db.read_sync(lambda tx: tx.execute("SELECT 1 FROM s3_notify_outbox")), timeout=30,
                     what="the outbox to empty")
        finally:
            asyncio.run(db.close())
    finally:
        platform.stop()


def test_a_nats_destination_and_minios_nats_target_on_the_platform(platform: Platform, ledger_function: Any) -> None:
    """The gateway's own NATS identity may publish a NATS destination's records (after S3's s3:TestEvent, sent
    to a queue when it is configured) and pull MinIO's inbox."""
    s3 = s3_client(platform)
    arn, ledger = ledger_function()
    bucket, subject = unique("natsdest"), f"kambda.s3.notify.{unique('uploads')}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": f"arn:kambda:nats:::{subject}", "Events": ["s3:ObjectCreated:*"]}],
        "LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn, "Events": ["s3:ObjectRemoved:*"]}]})
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"abc")

    async def over_nats() -> tuple[dict[str, Any], int]:
        nc = await nats.connect(platform.nats_url())
        try:
            js = nc.jetstream()
            sub = await js.subscribe(subject, ordered_consumer=True)
            test, msg = await sub.next_msg(30), await sub.next_msg(30)
            await sub.unsubscribe()
            assert {k: v for k, v in json.loads(test.data).items() if k in ("Service", "Event", "Bucket")} == {
                "Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket}
            # MinIO's NATS target (subject kambda.s3.inbox.<bucket>, JetStream on) publishes its webhook payload
            removed = {**MINIO, "EventName": "s3:ObjectRemoved:Delete",
                       "Records": [{**MINIO["Records"][0], "eventName": "s3:ObjectRemoved:Delete"}]}
            ack = await js.publish(f"{n.INBOX_PREFIX}{bucket}", json.dumps(removed).encode())
            return json.loads(msg.data), ack.seq
        finally:
            await nc.close()

    record, _ = asyncio.run(over_nats())
    assert record["Records"][0]["eventName"] == "ObjectCreated:Put"
    assert record["Records"][0]["s3"]["object"]["key"] == "a.txt"
    wait_for(lambda: ledger_of(ledger), timeout=60, what="MinIO's record through the inbox")
    assert [r["eventName"] for r in ledger_of(ledger)] == ["s3:ObjectRemoved:Delete"]


KEY, SECRET = "AKIDS3NOTIFYTEST", "s3-notify-test-secret"


def test_webhooks_carry_the_buckets_token_where_signatures_are_required(tmp_path: Path) -> None:
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps({"credentials": [{"accessKeyId": KEY, "secretAccessKey": SECRET, "role": "admin"}]}))
    platform = Platform(tmp_path / "state", ["--credentials", str(creds)]).start()
    try:
        s3 = boto3.client("s3", endpoint_url=platform.url, region_name=REGION, aws_access_key_id=KEY,
                          aws_secret_access_key=SECRET, config=Config(s3={"addressing_style": "path"}))
        lam = boto3.client("lambda", endpoint_url=platform.url, region_name=REGION, aws_access_key_id=KEY,
                           aws_secret_access_key=SECRET)
        ledger = tmp_path / "ledger.jsonl"
        lam.create_function(FunctionName="hook", Runtime="python3.12", Handler="app.handler",
                            Role="arn:aws:iam::000000000000:role/t", Code={"ZipFile": make_zip({"app.py": LEDGER})},
                            Environment={"Variables": {"LEDGER": str(ledger)}})
        s3.create_bucket(Bucket="images")
        s3.put_bucket_notification_configuration(Bucket="images", NotificationConfiguration={
            "LambdaFunctionConfigurations": [{"LambdaFunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:hook",
                                              "Events": ["s3:ObjectCreated:*"]}]})
        url = f"{platform.url}/_kambda/v1/s3-events/images"

        def call(method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None,
                 sign: bool = False) -> tuple[int, bytes]:
            request = AWSRequest(method=method, url=target, data=body, headers=headers or {})
            if sign:
                SigV4Auth(Credentials(KEY, SECRET), "s3", REGION).add_auth(request)
            prepared = urllib.request.Request(target, data=body or None, method=method, headers=dict(request.headers))
            try:
                with urllib.request.urlopen(prepared, timeout=30) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as exc:
                with exc:
                    return exc.code, exc.read()

        payload = json.dumps(MINIO).encode()
        assert call("POST", url, payload)[0] == 403  # unsigned where signatures are required
        assert call("POST", url, payload, {"Authorization": "Bearer guess"})[0] == 403  # no token made yet
        assert call("POST", url + "/token", sign=False)[0] == 403
        status, made = call("POST", url + "/token", sign=True)
        assert status == 200
        token = json.loads(made)["token"]
        assert call("POST", url, payload, {"Authorization": f"Bearer {token}"}) == (200, b'{"delivered": 1}')
        assert call("POST", f"{url}?token={token}", payload)[0] == 200  # a Ceph push-endpoint URL carries it so
        assert call("POST", url, payload, {"Authorization": f"Bearer {token}x"})[0] == 403
        assert call("POST", url, payload, sign=True)[0] == 200  # a signed caller needs no token
        wait_for(lambda: len(ledger_of(ledger)) >= 3, timeout=60, what="the three accepted payloads")
        assert call("DELETE", url + "/token", sign=True)[0] == 204
        assert call("POST", url, payload, {"Authorization": f"Bearer {token}"})[0] == 403
        assert len(ledger_of(ledger)) == 3
    finally:
        platform.stop()
