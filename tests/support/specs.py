"""The demo spec with some fields changed, as the tests write their variants of it."""

from __future__ import annotations

from typing import Any

import yaml

from tests.support.paths import DEMO_SPEC


def demo_spec_with(**changes: Any) -> dict[str, Any]:
    """The demo spec's document with ``changes`` applied; ``a__b=v`` sets ``a.b`` to v."""
    data: dict[str, Any] = yaml.safe_load(DEMO_SPEC.read_text())
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return data
