"""tap-ashby keeps to singer-sdk's public contract (checked against the installed SDK)."""

from __future__ import annotations

import importlib
import inspect

import singer_sdk

from tap_ashby.streams import EndpointStream
from tap_ashby.tap import TapAshby

OURS = (TapAshby, EndpointStream)


IGNORED = {"_abc_impl"}  # set by Python's ABCMeta on every subclass, not by us


def sdk_bases(cls: type) -> list[type]:
    return [base for base in cls.__mro__ if base.__module__.split(".")[0] == singer_sdk.__name__]


def own_names(cls: type) -> set[str]:
    """Attributes defined by tap-ashby's classes (not inherited from the SDK)."""
    return {
        name
        for klass in cls.__mro__
        if klass.__module__.startswith("tap_ashby")
        for name in vars(klass)
    } - IGNORED


def test_no_method_marked_final_is_overridden() -> None:
    finals_seen = 0
    for cls in OURS:
        for base in sdk_bases(cls):
            for name, member in vars(base).items():
                target = member.fget if isinstance(member, property) else member
                target = getattr(target, "__func__", target)
                if getattr(target, "__final__", False):
                    finals_seen += 1
                    assert name not in own_names(cls), (
                        f"{cls.__name__}.{name} overrides {base.__name__}.{name}, marked final"
                    )
    assert finals_seen >= 5  # the check does see the SDK's final methods (sync, sync_all, ...)


def test_no_private_sdk_attribute_is_set() -> None:
    for cls in OURS:
        sdk_private = {
            name
            for base in sdk_bases(cls)
            for name in vars(base)
            if name.startswith("_") and not name.startswith("__")
        }
        clash = own_names(cls) & sdk_private
        assert not clash, f"{cls.__name__} sets private SDK attributes {sorted(clash)}"


def test_no_private_sdk_attribute_is_assigned_in_the_code() -> None:
    sdk_private = {
        name
        for cls in OURS
        for base in sdk_bases(cls)
        for name in vars(base)
        if name.startswith("_") and not name.startswith("__")
    }
    for module in ("client", "streams", "tap", "run", "passes", "ledger.run", "ledger.store"):
        source = inspect.getsource(importlib.import_module(f"tap_ashby.{module}"))
        for name in sdk_private:
            assert f".{name} =" not in source, f"tap_ashby/{module}.py assigns {name}"
