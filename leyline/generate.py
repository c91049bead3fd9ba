"""Regenerate the protobuf bindings (leyline_pb2.py and its .pyi stubs) from leyline.proto.

Run `python -m leyline.generate` after editing the .proto and commit the result; a test fails when the
committed bindings differ from what this script produces.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROTO = PACKAGE_DIR / "leyline.proto"
GENERATED = ("leyline_pb2.py", "leyline_pb2.pyi")


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) on leyline.proto, writing the bindings into out_dir."""
    from grpc_tools import protoc

    args = [
        "protoc",
        f"--proto_path={PACKAGE_DIR}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        str(PROTO),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTO}")
    return [out_dir / name for name in GENERATED]


def stale_files() -> list[str]:
    """Names of committed bindings that differ from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        return [
            path.name
            for path in fresh
            if not (PACKAGE_DIR / path.name).exists()
            or (PACKAGE_DIR / path.name).read_bytes() != path.read_bytes()
        ]


def main() -> int:
    for path in generate(PACKAGE_DIR):
        print(f"wrote {path.relative_to(PACKAGE_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
