"""Regenerate kambda/v1/*_pb2*.py from proto/kambda/v1/*.proto (run after editing a .proto).

tests/test_proto.py fails when the committed modules are stale.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc  # the test extra installs grpcio-tools

    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    args = ["protoc", f"-I{ROOT / 'proto'}", f"--python_out={out_dir}", f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}", *protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        for f in sorted((Path(tmp) / "kambda" / "v1").iterdir()):
            (ROOT / "kambda" / "v1" / f.name).write_bytes(f.read_bytes())
            print(f"wrote kambda/v1/{f.name}", file=sys.stderr)


if __name__ == "__main__":
    main()
