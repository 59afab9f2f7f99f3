"""Where the repository and its demo spec are, for tests that read them."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO_SPEC = REPO / "datasets" / "demo.yaml"
