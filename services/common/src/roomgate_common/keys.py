"""Every Redis key and pub/sub channel name Roomgate uses: the one place for them.

Keys that belong together in Redis Cluster share a hash tag (``{...}``). Nothing else in
the code base builds a key string by hand.
"""

from __future__ import annotations

PREFIX = "rg"

# --- auth -------------------------------------------------------------------------------


def revoked_token(jti: str) -> str:
    """String; present while the token with this jti is revoked (expires with the token)."""
    return f"{PREFIX}:auth:revoked:jti:{jti}"


def revoked_before(kind: str, principal_id: str) -> str:
    """String holding a Unix time: tokens of this principal issued at or before it are revoked."""
    return f"{PREFIX}:auth:revoked:principal:{kind}:{principal_id}"


REVOCATIONS_CHANNEL = f"{PREFIX}:events:revoked"
"""Pub/sub channel: one JSON message per revocation (``roomgate_common.revocation``), sent by
auth after the revocation is stored; every gateway closes the live sessions it names."""


def api_key(digest: str) -> str:
    """Hash describing the agent an API key (by its SHA-256 hex digest) stands for."""
    return f"{PREFIX}:auth:apikey:{digest}"


# --- roomauthz ACL data -------------------------------------------------------------------


def acl_set(relation: str, subject_id: str) -> str:
    """Set of object ids (groups or teams) a subject is related to.

    ``relation`` is one of ``agent_group``, ``user_group``, ``user_team``.
    """
    return f"{PREFIX}:acl:{{acl}}:{relation}:{subject_id}"


def acl_subjects(relation: str) -> str:
    """Set of subject ids that have at least one entry of ``relation``."""
    return f"{PREFIX}:acl:{{acl}}:{relation}:_subjects"


ACL_VERSION = f"{PREFIX}:acl:{{acl}}:version"
"""Integer, incremented by every ACL change."""

ACL_CHANGED_CHANNEL = f"{PREFIX}:events:acl"
"""Pub/sub channel: one JSON message per effective ACL change, exactly
``{"version": N, "changes": [{"op": "add"|"remove", "relation": "agent_group"|"user_group"|
"user_team", "subject_id": "7", "object_id": "3"}, ...]}`` (roomgate_common.aclevents,
docs/authorization.md)."""

# --- gateway bus ---------------------------------------------------------------------------


def room_channel(room: str) -> str:
    """Pub/sub channel carrying the live messages of one room. Each message is
    ``b"<offset> <epoch> <envelope JSON>"`` (see roomgate_common.publisher)."""
    return f"{PREFIX}:room:{{{room}}}"


def conn_count_ip(ip: str) -> str:
    """Hash: gateway id -> live connections from this IP on that gateway."""
    return f"{PREFIX}:conn:ip:{ip}"


def conn_count_user(user_id: str) -> str:
    """Hash: gateway id -> live connections of this user on that gateway."""
    return f"{PREFIX}:conn:user:{user_id}"


def rate_user(user_id: str, window: int) -> str:
    """Counter of messages a user sent in one rate window (expires after two windows)."""
    return f"{PREFIX}:rate:user:{user_id}:{window}"


def rate_connect(principal: str, window: int) -> str:
    """Counter of connects of one principal (``kind:id``) in one rate window (a minute;
    expires after two)."""
    return f"{PREFIX}:rate:connect:{principal}:{window}"


LIVE_POLICY = f"{PREFIX}:policy:live"
"""Hash: the live gateway policy (``generation`` and ``limits`` JSON) written by the operator."""

POLICY_CHANGED_CHANNEL = f"{PREFIX}:events:policy"
"""Pub/sub channel: a message whenever LIVE_POLICY changes."""


def gateway_presence(gateway_id: str) -> str:
    """Hash with a TTL: a gateway's live figures (connections, applied policy generation...)."""
    return f"{PREFIX}:gateway:{gateway_id}"


def gateway_count_keys(gateway_id: str) -> str:
    """Set of the connection-count hashes (``conn_count_*``) a gateway has a field in."""
    return f"{PREFIX}:gateway:{gateway_id}:countkeys"


GATEWAYS = f"{PREFIX}:gateways"
"""Sorted set: gateway id -> last heartbeat (Unix seconds)."""


def gateway_control_channel(gateway_id: str) -> str:
    """Pub/sub channel for commands to one gateway (e.g. drain)."""
    return f"{PREFIX}:control:{gateway_id}"


def room_history(room: str) -> str:
    """Stream: the room's history. Entry ids are ``<offset>-1`` (offset = the room position);
    field ``m`` holds the envelope JSON, ``t`` the append time (Unix ms, for the age bound).
    Escalation consumes ``room_history("alerts")`` with a consumer group."""
    return f"{PREFIX}:history:{{{room}}}"


def room_meta(room: str) -> str:
    """Hash: ``epoch`` (string, changes when history is lost) and ``offset`` (last position)."""
    return f"{PREFIX}:roommeta:{{{room}}}"


# --- escalation ----------------------------------------------------------------------------
# Every escalation key shares the hash tag {esc}, so the Lua scripts that change several of
# them at once stay valid on Redis Cluster.


def esc_alert(alert_id: str) -> str:
    """Hash: one alert (state, data JSON, plan, levels fired, next due time, who acked...)."""
    return f"{PREFIX}:esc:{{esc}}:alert:{alert_id}"


def esc_timeline(alert_id: str) -> str:
    """List of JSON entries (triggered, escalated, acknowledged...), capped, oldest first."""
    return f"{PREFIX}:esc:{{esc}}:timeline:{alert_id}"


def esc_dedup(dedup_key: str) -> str:
    """String: the alert id an open alert's deduplication key points to."""
    return f"{PREFIX}:esc:{{esc}}:dedup:{dedup_key}"


def esc_seen(stream_entry_id: str) -> str:
    """String with a TTL: this bus entry of ``room_history("alerts")`` was applied already."""
    return f"{PREFIX}:esc:{{esc}}:seen:{stream_entry_id}"


ESC_DUE = f"{PREFIX}:esc:{{esc}}:due"
"""Sorted set: alert id -> due time (Unix ms, Redis clock) of its next escalation level; a
claimed timer's score is moved to the end of its lease."""

ESC_CLAIMS = f"{PREFIX}:esc:{{esc}}:claims"
"""Hash: alert id -> claim token of the replica currently firing its due level."""

ESC_ACTIVE = f"{PREFIX}:esc:{{esc}}:active"
"""Sorted set: alert id -> creation time (Unix ms) of every alert not yet resolved."""

ESC_COUNTS = f"{PREFIX}:esc:{{esc}}:counts"
"""Hash: state -> number of alerts in it (triggered, escalated, acknowledged)."""


# --- offline mailboxes (per user; share the user room's hash tag: one slot) -------------


def mailbox(user_id: str) -> str:
    """Sorted set: envelope ids waiting for the user's ack, scored by arrival sequence."""
    return f"{PREFIX}:mailbox:{{user-{user_id}}}"


def mailbox_messages(user_id: str) -> str:
    """Hash: envelope id -> the message in bus format (``<offset> <epoch> <JSON>``)."""
    return f"{PREFIX}:mailbox:{{user-{user_id}}}:msgs"


def mailbox_low(user_id: str) -> str:
    """Sorted set: the ``low``-priority subset of ``mailbox`` (evicted first when full)."""
    return f"{PREFIX}:mailbox:{{user-{user_id}}}:low"


def mailbox_keys(user_id: str) -> list[str]:
    return [mailbox(user_id), mailbox_messages(user_id), mailbox_low(user_id)]
