"""Local images for the test cluster (issue 15): no registry is reachable here, so the images
`make images` built are exported from that Docker engine's data root (``docker save``) into
archives that ``ctr images import`` loads into the cluster's containerd.

Archives are cached under ``.cache/cluster-images`` by image ID, which is read from the
data root's ``image/overlay2/repositories.json``: a second export of an unchanged image does
not start dockerd at all, and a rebuilt image (new ID) is exported again. Without a data root
of our own (a host Docker engine) nothing counts as cached.

    python -m roomgate_tools.cluster_images --data-root /work/main/.cache/images/docker \\
        ghcr.io/roomgate/roomgate-gateway:0.1.0
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from roomgate_tools.engine import REPO_ROOT, DockerEngine, EngineError, default_data_root

CACHE = REPO_ROOT / ".cache" / "cluster-images"


def _slug(ref: str) -> str:
    return ref.replace("/", "_").replace(":", "_")


def stored_image_id(ref: str, root: Path) -> str | None:
    """The ID the engine on ``root`` has for ``ref``, read from its files (no dockerd)."""
    repositories = root / "image" / "overlay2" / "repositories.json"
    if not repositories.exists():
        return None
    tags: dict[str, dict[str, str]] = json.loads(repositories.read_text())["Repositories"]
    return next((ids[ref] for ids in tags.values() if ref in ids), None)


def _cached(ref: str, cache: Path, root: Path) -> Path | None:
    index = cache / "index.json"
    image_id = stored_image_id(ref, root)
    if image_id is None or not index.exists():
        return None
    entry = json.loads(index.read_text()).get(ref)
    if not entry or entry["id"] != image_id:
        return None
    archive = cache / str(entry["archive"])
    return archive if archive.exists() else None


def export_images(
    refs: Sequence[str], *, root: Path | None = None, cache: Path = CACHE
) -> dict[str, Path]:
    """``docker save`` each image (once) into ``cache``; returns ref -> archive.

    Starts a dockerd on ``root`` only when some archive is missing; ``EngineError`` when an
    image does not exist there (run `make images`)."""
    root = root or default_data_root()
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    missing = []
    for ref in refs:
        archive = _cached(ref, cache, root)
        if archive is None:
            missing.append(ref)
        else:
            out[ref] = archive
    if not missing:
        return out
    index_path = cache / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    eng = DockerEngine.ensure(root)
    try:
        for ref in missing:
            if not eng.has_image(ref):
                raise EngineError(f"{ref}: no such image in {root} (`make images`)")
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
