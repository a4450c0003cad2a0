"""Generate the Python code (messages, .pyi stubs, gRPC stubs) for every proto in protos/.

protos/ is the only source of .proto files; the output lands in
services/common/src/roomgate/ (package ``roomgate.<service>.v1``) and is committed.

    python tools/gen_protos.py            # regenerate in place
    python tools/gen_protos.py --check    # exit 1 when the committed code is stale
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "services" / "common" / "src" / "roomgate"


def generate(dest: Path) -> None:
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={dest}",
        f"--pyi_out={dest}",
        f"--grpc_python_out={dest}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Every folder of the generated tree becomes a regular package.
    for folder in [dest / "roomgate", *(p for p in (dest / "roomgate").rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    (dest / "roomgate" / "py.typed").touch()


def tree(path: Path) -> dict[str, Path]:
    return {str(p.relative_to(path)): p for p in path.rglob("*") if p.is_file()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when generated code is stale")
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = tree(Path(tmp) / "roomgate")
        if ns.check:
            current = {k: v for k, v in tree(OUT).items() if "__pycache__" not in k}
            stale = sorted(
                set(fresh) ^ set(current)
                | {
                    k
                    for k in fresh.keys() & current.keys()
                    if not filecmp.cmp(fresh[k], current[k], shallow=False)
                }
            )
            if stale:
                print("generated protobuf code is stale; run `make protos`:", *stale, sep="\n  ")
                return 1
            print(f"generated protobuf code is up to date ({len(fresh)} files)")
            return 0
        shutil.rmtree(OUT, ignore_errors=True)
        shutil.copytree(Path(tmp) / "roomgate", OUT)
        print(f"wrote {len(fresh)} files to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
