"""The public surface: each public package's ``__all__`` is exactly its public names, no name means
two different things across packages, and the top-level API is pinned (a change here is a change
for users: update the docs with it)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pytest

import decart_widget

#: The packages users import from.
PUBLIC_PACKAGES = (
    "decart_widget",
    "decart_widget.client",
    "decart_widget.emulator",
    "decart_widget.protocol",
    "decart_widget.proxy",
    "decart_widget.widget",
)

TOP_LEVEL = [
    "AckTimeout",
    "AlreadyRecording",
    "AuthenticationError",
    "Backend",
    "ClientToken",
    "ConcurrencyLimit",
    "ConnectionLost",
    "Decart",
    "DecartError",
    "Direct",
    "Emulator",
    "InsufficientCredits",
    "InvalidInput",
    "Kernel",
    "MissingDependency",
    "ModerationError",
    "NotRecording",
    "ProtocolError",
    "Proxy",
    "RealtimeModel",
    "RealtimeSession",
    "RealtimeWidget",
    "RecordingError",
    "RecordingTooLarge",
    "SessionEnded",
    "TokenMinter",
    "__version__",
    "models",
]


def load(name: str) -> ModuleType:
    module = importlib.import_module(name)
    for exported in module.__all__:
        getattr(module, exported)  # resolves lazy names; fails on a listed name that is missing
    return module


def public_names(module: ModuleType) -> set[str]:
    """What ``from module import ...`` users would take for its API: every name that does not
    start with ``_``, except submodules, ``from __future__`` features and typing helpers."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, ModuleType)
        and getattr(value, "__module__", None) != "__future__"
        and name not in ("TYPE_CHECKING", "Any")
    }


@pytest.mark.parametrize("name", PUBLIC_PACKAGES)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    module = load(name)
    exported = set(module.__all__)
    assert len(exported) == len(module.__all__), "a name is listed twice"
    modules = {e for e in exported if isinstance(getattr(module, e), ModuleType)}
    dunders = {e for e in exported if e.startswith("__")}
    assert exported - modules - dunders == public_names(module)


def test_the_top_level_api_is_pinned() -> None:
    assert sorted(decart_widget.__all__) == sorted(TOP_LEVEL)


def test_no_name_means_two_things_across_the_packages() -> None:
    owners: dict[str, dict[int, set[str]]] = {}
    values: dict[int, Any] = {}  # keeps every value alive, so no id() is reused meanwhile
    for package in PUBLIC_PACKAGES:
        module = load(package)
        for exported in module.__all__:
            value = getattr(module, exported)
            values[id(value)] = value
            owners.setdefault(exported, {}).setdefault(id(value), set()).add(package)
    collisions = {
        exported: set().union(*by_value.values())
        for exported, by_value in owners.items()
        if len(by_value) > 1 and not exported.startswith("__")
    }
    assert collisions == {}


def test_the_top_level_re_exports_the_packages_objects() -> None:
    from decart_widget import client, emulator, protocol, widget

    for exported in decart_widget.__all__:
        value = getattr(decart_widget, exported)
        for package in (client, emulator, protocol, widget):
            if exported in package.__all__:
                assert getattr(package, exported) is value, exported
