"""Settings of the roomauthz service (environment ``ROOMGATE_*``, read once in ``main``)."""

from __future__ import annotations

from pydantic import Field
from roomgate_common.settings import ServiceSettings


class RoomAuthzSettings(ServiceSettings):
    """``ROOMGATE_LISTEN``, ``ROOMGATE_ADMIN_SECRET``, ``ROOMGATE_POLICY_FILE``,
    ``ROOMGATE_ACL_CACHE_TTL``, ``ROOMGATE_MAX_BATCH``, ``ROOMGATE_MAX_ACL_CHANGES`` plus the
    common ones (``ROOMGATE_REDIS_URL``, ``ROOMGATE_METRICS_LISTEN``, ...)."""

    # host:port of the gRPC server (0.0.0.0:50052 in a pod).
    listen: str = "127.0.0.1:50052"
    # Bearer credential of the AclAdminService; empty refuses every admin call.
    admin_secret: str = ""
    # YAML (.yaml/.yml) or JSON file overriding parts of the default policy; empty: default.
    policy_file: str = ""
    # Seconds an ACL read may be served from memory (0 disables the cache). Invalidated by
    # the ACL change event; the TTL bounds staleness if an event is ever missed.
    acl_cache_ttl: float = Field(default=1.0, ge=0, le=60)
    # Most items one AuthorizeMany may carry.
    max_batch: int = Field(default=1000, ge=1)
    # Most entries (add + remove) one ChangeAcl may carry.
    max_acl_changes: int = Field(default=1000, ge=1)
