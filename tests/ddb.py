"""What the DynamoDB tests share: a platform per engine (SQLite under its state dir, or a real PostgreSQL through
KAMBDA_TABLES_DSN), boto3 clients pointed at it, and a table maker that removes its tables afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.conftest import Platform, unique
from tests.postgres import fresh_database, postgres_server

ENGINES = ["sqlite", "postgresql"]


def start_platform(engine: str, state: Path, stack: Any, env: dict[str, str] | None = None) -> Platform:
    extra = dict(env or {})
    if engine == "postgresql":
        server = stack.enter_context(postgres_server())
        extra["KAMBDA_TABLES_DSN"] = fresh_database(server, unique("ddb").replace("-", "_"))
    running = Platform(state, env=extra).start()
    stack.callback(running.stop)
    return running


def clients(platform: Platform) -> tuple[Any, Any, Any]:
    kw: dict[str, Any] = {"endpoint_url": platform.url, "region_name": "us-east-1", "aws_access_key_id": "x",
                          "aws_secret_access_key": "x",
                          "config": Config(retries={"max_attempts": 1}, read_timeout=60, connect_timeout=10)}
    return boto3.client("dynamodb", **kw), boto3.resource("dynamodb", **kw), boto3.client("dynamodbstreams", **kw)


@pytest.fixture
def make_table(ddb: Any) -> Iterator[Callable[..., str]]:
    made: list[str] = []

    def make(hash_key: tuple[str, str] = ("pk", "S"), range_key: tuple[str, str] | None = ("sk", "S"),
             **params: Any) -> str:
        name = params.pop("TableName", None) or unique("t")
        schema = [{"AttributeName": hash_key[0], "KeyType": "HASH"}]
        types = {hash_key[0]: hash_key[1]}
        if range_key:
            schema.append({"AttributeName": range_key[0], "KeyType": "RANGE"})
            types[range_key[0]] = range_key[1]
        types.update(params.pop("extra_types", {}))
        ddb.create_table(TableName=name, KeySchema=schema, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": k, "AttributeType": v} for k, v in types.items()],
                         **params)
        made.append(name)
        return name

    yield make
    for name in made:
        try:
            ddb.delete_table(TableName=name)
        except ddb.exceptions.ResourceNotFoundException:
            pass
