"""The chart's DynamoDB settings: a PostgreSQL DSN from a Secret, or SQLite on a claim shared by gateway and
worker."""

from __future__ import annotations

from typing import Any

from tests.chart import objects_of, render


def _pods(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"].rsplit("-", 1)[1]: doc["spec"]["template"]["spec"]
            for doc in objects_of(render(values))
            if doc.get("kind") == "Deployment" and doc["metadata"]["name"].endswith(("gateway", "worker"))}


def test_dsn_secret_reaches_gateway_and_worker() -> None:
    pods = _pods({"tables": {"dsnSecret": {"name": "pg", "key": "uri"}}})
    assert set(pods) == {"gateway", "worker"}
    for spec in pods.values():
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        assert env["KAMBDA_TABLES_DSN"]["valueFrom"] == {"secretKeyRef": {"name": "pg", "key": "uri"}}
        assert not any(v.get("persistentVolumeClaim") for v in spec["volumes"])


def test_sqlite_claim_is_mounted_by_both() -> None:
    for spec in _pods({"tables": {"sqliteClaim": "tables-pvc"}}).values():
        assert {"name": "tables", "persistentVolumeClaim": {"claimName": "tables-pvc"}} in spec["volumes"]
        mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["tables"] == "/var/lib/kambda/tables"
        assert "KAMBDA_TABLES_DSN" not in {e["name"] for e in spec["containers"][0]["env"]}


def test_default_has_neither() -> None:
    for spec in _pods({}).values():
        assert "tables" not in {v["name"] for v in spec["volumes"]}
        assert "KAMBDA_TABLES_DSN" not in {e["name"] for e in spec["containers"][0]["env"]}
