"""What a Bokeh page (``bokeh.embed.file_html``) holds: its named data sources, read from the
document JSON embedded in the page, as a browser's BokehJS would read them."""

from __future__ import annotations

import json
import re
from typing import Any

_DOCUMENT = re.compile(r'<script type="application/json" id="[^"]+">\s*(.*?)\s*</script>', re.S)


def named_sources(page: str) -> dict[str, dict[str, list[Any]]]:
    """Every ``ColumnDataSource`` with a name in the page, as ``{name: {column: values}}``."""
    found: dict[str, dict[str, list[Any]]] = {}
    for blob in _DOCUMENT.findall(page):
        for document in json.loads(blob).values():
            _collect(document, found)
    return found


def _collect(node: Any, found: dict[str, dict[str, list[Any]]]) -> None:
    if isinstance(node, dict):
        attributes = node.get("attributes") or {}
        if node.get("name") == "ColumnDataSource" and attributes.get("name"):
            found[attributes["name"]] = _columns(attributes.get("data"))
        for value in node.values():
            _collect(value, found)
    elif isinstance(node, list):
        for value in node:
            _collect(value, found)


def _columns(data: Any) -> dict[str, list[Any]]:
    # Bokeh serializes a dict as {"type": "map", "entries": [[key, value], ...]}.
    if isinstance(data, dict) and data.get("type") == "map":
        return {key: list(value) for key, value in data.get("entries", [])}
    return dict(data or {})
