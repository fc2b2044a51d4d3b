"""The generated protobuf modules match proto/, and the layers keep to their contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from kambda.v1 import controller_pb2, function_pb2, invocation_pb2, invoker_pb2, mapping_pb2

REPO = Path(__file__).resolve().parent.parent


def test_generated_modules_are_not_stale(tmp_path: Path) -> None:
    from grpc_tools import protoc

    out = tmp_path / "set.pb"
    protos = sorted(str(p.relative_to(REPO / "proto")) for p in (REPO / "proto").rglob("*.proto"))
    assert protoc.main(["protoc", f"-I{REPO / 'proto'}", f"--descriptor_set_out={out}", *protos]) == 0
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    committed = {m.DESCRIPTOR.name: descriptor_pb2.FileDescriptorProto.FromString(m.DESCRIPTOR.serialized_pb)
                 for m in (controller_pb2, function_pb2, invocation_pb2, invoker_pb2, mapping_pb2)}
    assert {f.name for f in fresh.file} == set(committed), "a .proto has no generated module: run scripts/gen_proto.py"
    for file in fresh.file:
        assert _normalised(file) == _normalised(committed[file.name]), \
            f"kambda/v1 is stale against proto/{file.name}: run scripts/gen_proto.py"


def _normalised(file: descriptor_pb2.FileDescriptorProto) -> bytes:
    """The descriptor without json_name, which protoc fills in only for descriptor sets."""
    copy = descriptor_pb2.FileDescriptorProto()
    copy.CopyFrom(file)
    todo = list(copy.message_type)
    while todo:
        message = todo.pop()
        for field in message.field:
            field.ClearField("json_name")
        todo.extend(message.nested_type)
    return copy.SerializeToString(deterministic=True)


def test_import_layers() -> None:
    linter = Path(sys.executable).parent / "lint-imports"
    if not linter.exists():
        pytest.fail("import-linter is not installed (pip install -e '.[test]')")
    done = subprocess.run([str(linter)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_is_clean() -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_is_clean_over_every_package() -> None:
    """mypy with the settings in pyproject.toml ([tool.mypy]: the kernel, the products and the services)."""
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
