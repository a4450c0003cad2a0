"""docs/protocol.md is the contract: every close code, error code and setting it names is the
code's, and every one the code has is documented."""

from __future__ import annotations

import re
from pathlib import Path

from roomgate_gateway.codes import CLOSE_REASONS, CloseCode, ErrorCode
from roomgate_gateway.settings import GatewaySettings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()


def section(title: str) -> str:
    start = DOC.index(f"## {title}")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end > 0 else None]


def test_every_close_code_is_documented_with_its_reason() -> None:
    """Each close code appears in the close-code table with its exact reason text."""
    rows = {
        int(m[0]): m[1]
        for m in re.findall(r"^\| (\d{4}) \| `([^`]+)`", section("Close codes"), re.M)
    }
    assert set(rows) == {int(c) for c in CloseCode}
    for code, reason in CLOSE_REASONS.items():
        assert rows[int(code)] == reason


def test_every_error_code_is_documented() -> None:
    """The error-code table lists exactly the codes the gateway sends."""
    rows = set(re.findall(r"^\| `([a-z_]+)` \|", section("Error codes"), re.M))
    assert rows == {c.value for c in ErrorCode}


def test_documented_settings_exist() -> None:
    """Every setting in the limits table is a gateway setting, with the documented default."""
    fields = GatewaySettings.model_fields
    for name in re.findall(r"`([A-Z_]{4,})`", section("Limits")):
        assert name.lower() in fields, name
    defaults = GatewaySettings.from_env()
    assert defaults.max_connections_per_ip == 10
    assert defaults.messages_per_user_per_minute == 100
    assert defaults.max_message_bytes == 65536
    assert defaults.auth_deadline == 5


def test_the_module_map_names_every_gateway_module() -> None:
    """services/gateway/README.md's module map lists exactly the package's modules."""
    package = Path(__file__).resolve().parents[2] / "services" / "gateway"
    readme = (package / "README.md").read_text()
    table = readme[
        readme.index("## Module map") : readme.index("\n## ", readme.index("## Module map") + 1)
    ]
    named = set(re.findall(r"`([a-z_]+\.py)`", table))
    scripts = set(re.findall(r"`([a-z_]+)_\*\.lua`", table))
    source = package / "src" / "roomgate_gateway"
    modules = {p.name for p in source.glob("*.py") if p.name != "__init__.py"}
    assert named == modules, (sorted(modules - named), sorted(named - modules))
    for lua in source.glob("*.lua"):
        assert any(lua.name.startswith(f"{prefix}_") for prefix in scripts), lua.name


def test_every_gateway_exception_is_a_gateway_error_in_the_tree() -> None:
    """One exception base for the gateway; errors.py's docstring names every exception."""
    import importlib
    import pkgutil

    import roomgate_gateway
    from roomgate_gateway import errors

    found = set()
    for info in pkgutil.iter_modules(roomgate_gateway.__path__):
        module = importlib.import_module(f"roomgate_gateway.{info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                assert issubclass(value, errors.GatewayError), value
                found.add(value.__name__)
    tree = set(re.findall(r"── (\w+)", errors.__doc__ or ""))
    assert tree == found, (sorted(found - tree), sorted(tree - found))
