"""PartiQL's ExecuteStatement for DynamoDB: SELECT, INSERT, UPDATE and DELETE on one table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tables.errors import validation

if TYPE_CHECKING:
    from tables.api import TablesApi


async def execute(api: TablesApi, params: dict[str, Any]) -> dict[str, Any]:
    raise validation("Statement wasn't well formed, can't be processed: PartiQL is not supported yet")
