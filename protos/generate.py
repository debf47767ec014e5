"""Regenerate wadm_grpc/pb from protos/ (run by `make protos`; the output is committed)."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from google.api import annotations_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "wadm_grpc" / "pb"
# Generated modules import each other as `wadm.market.v1...`; they live under `wadm_grpc.pb`.
# mypy-protobuf's plugins are installed beside this interpreter.
BIN = Path(sys.executable).parent
DESCRIPTOR_SET = "wadm.binpb"  # a FileDescriptorSet of protos/wadm with source info (comments)
IMPORT = re.compile(r"^(from|import) wadm\.", re.MULTILINE)


def main() -> int:
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "wadm").rglob("*.proto"))
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"-I{Path(annotations_pb2.__file__).parents[2]}",
            f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
            f"--python_out={OUT}",
            f"--mypy_out={OUT}",
            f"--grpc_python_out={OUT}",
            f"--mypy_grpc_out={OUT}",
            # The generated modules drop the protos' comments; the OpenAPI document reads them from here.
            f"--descriptor_set_out={OUT / DESCRIPTOR_SET}",
            "--include_source_info",
            *sources,
        ]
    )
    if code != 0:
        return int(code)
    for path in sorted(OUT.rglob("*.py*")):
        text = path.read_text()
        path.write_text(IMPORT.sub(r"\1 wadm_grpc.pb.wadm.", text))
    for package in sorted({OUT, *(p.parent for p in OUT.rglob("*.py"))}):
        while package != OUT.parent:
            (package / "__init__.py").touch()
            package = package.parent
    (OUT / "py.typed").touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
