"""Lakes written by earlier releases (``tests/data/lake-<release>/``), copied for a test.

A lake's records name the absolute paths it was written at; the copy's records are
rewritten to name the copy's paths, as if that release had run there.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import REPO

# Where tests/data/lake-0.1.0 was written (its README says how).
WRITTEN_AT = "/tmp/mlops-lake-fixture"
BINARY = (".parquet", ".ubj")


@dataclass(frozen=True)
class ReleaseLake:
    landing: Path
    lake: Path


def copy_release_lake(release: str, into: Path) -> ReleaseLake:
    """The landing folder and the lake of ``release``, copied under ``into``."""
    source = REPO / "tests" / "data" / f"lake-{release}"
    landing, lake = into / "landing", into / "lake"
    shutil.copytree(source / "landing", landing)
    shutil.copytree(source / "lakeroot", lake)
    for path in lake.rglob("*"):
        if path.is_file() and not path.name.endswith(BINARY):
            text = path.read_text()
            moved = text.replace(f"{WRITTEN_AT}/lake", str(lake)).replace(
                f"{WRITTEN_AT}/landing", str(landing)
            )
            if moved != text:
                path.write_text(moved)
    return ReleaseLake(landing=landing, lake=lake)


def files_with_mtimes(root: Path, under: str) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of the files under ``root/under``."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in (root / under).rglob("*")
        if p.is_file()
    }
