"""The local development environment's secrets, made once per checkout under ``.dev/``
(ignored by git): the HS256 signing secret the dev auth service trusts and the admin
credential. ``make dev`` passes them to the services; ``roomgate token`` signs with them.

Never used outside development: production keys come from a Kubernetes Secret.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DEV_DIR = Path(os.environ.get("ROOMGATE_DEV_DIR", ROOT / ".dev"))
SECRETS_FILE = DEV_DIR / "secrets.env"

DEV_ISSUER = "roomgate-dev"
DEV_AUDIENCE = "roomgate"


def dev_secrets() -> dict[str, str]:
    """``{ROOMGATE_JWT_HS256_SECRET, ROOMGATE_ADMIN_SECRET, ...}``, created on first use."""
    if not SECRETS_FILE.exists():
        DEV_DIR.mkdir(parents=True, exist_ok=True)
        values = {
            "ROOMGATE_JWT_HS256_SECRET": secrets.token_urlsafe(48),
            "ROOMGATE_ADMIN_SECRET": secrets.token_urlsafe(32),
            "ROOMGATE_JWT_ISSUER": DEV_ISSUER,
            "ROOMGATE_JWT_AUDIENCE": DEV_AUDIENCE,
        }
        fd = os.open(SECRETS_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.writelines(f"{k}={v}\n" for k, v in values.items())
    result: dict[str, str] = {}
    for line in SECRETS_FILE.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            result[key.strip()] = value.strip()
    return result
