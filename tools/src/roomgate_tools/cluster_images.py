"""Local images for the test cluster (issue 15): no registry is reachable here, so the images
`make images` built are exported from that Docker engine's data root (``docker save``) into
archives that ``ctr images import`` loads into the cluster's containerd.

Archives are cached under ``.cache/cluster-images`` by image ID: a second export of an
unchanged image does not start dockerd at all.

    python -m roomgate_tools.cluster_images --data-root /work/main/.cache/images/docker \\
        ghcr.io/roomgate/roomgate-gateway:0.1.0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from roomgate_tools.engine import DEFAULT_DATA_ROOT, DockerEngine, EngineError

REPO_ROOT = Path(__file__).resolve().parents[3]
CACHE = REPO_ROOT / ".cache" / "cluster-images"


def data_root() -> Path:
    """Where the images are: $ROOMGATE_DOCKER_DATA_ROOT, else this clone's .cache/images."""
    return Path(os.environ.get("ROOMGATE_DOCKER_DATA_ROOT", DEFAULT_DATA_ROOT))


def _slug(ref: str) -> str:
    return ref.replace("/", "_").replace(":", "_")


def _cached(ref: str, cache: Path) -> Path | None:
    index = cache / "index.json"
    if not index.exists():
        return None
    entry = json.loads(index.read_text()).get(ref)
    archive = cache / str(entry["archive"]) if entry else None
    return archive if archive is not None and archive.exists() else None


def export_images(
    refs: Sequence[str], *, root: Path | None = None, cache: Path = CACHE
) -> dict[str, Path]:
    """``docker save`` each image (once) into ``cache``; returns ref -> archive.

    Starts a dockerd on ``root`` only when some archive is missing; ``EngineError`` when an
    image does not exist there (run `make images`)."""
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    missing = []
    for ref in refs:
        archive = _cached(ref, cache)
        if archive is None:
            missing.append(ref)
        else:
            out[ref] = archive
    if not missing:
        return out
    index_path = cache / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    eng = DockerEngine.ensure(root or data_root())
    try:
        for ref in missing:
            if not eng.has_image(ref):
                raise EngineError(f"{ref}: no such image in {root or data_root()} (`make images`)")
            image_id = eng.docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
            name = f"{_slug(ref)}-{image_id.removeprefix('sha256:')[:12]}.tar"
            tmp = cache / f"{name}.tmp"
            eng.docker("save", "--output", str(tmp), ref, timeout=600)
            tmp.rename(cache / name)
            index[ref] = {"id": image_id, "archive": name}
            index_path.write_text(json.dumps(index, indent=2))
            out[ref] = cache / name
    finally:
        eng.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m roomgate_tools.cluster_images")
    parser.add_argument("refs", nargs="+")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args(argv)
    for ref, archive in export_images(args.refs, root=args.data_root, cache=args.cache).items():
        print(f"{ref}: {archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
