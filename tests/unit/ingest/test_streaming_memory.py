"""A worker never holds a whole large file: ingesting files four and more times larger than
the memory it takes, measured as the peak resident memory of a real process."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.demo_data import encode, make_frame
from tests.support.paths import REPO

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
BLOCK_ROWS = 100_000
BLOCKS = 32  # 3.2 million rows: about 260 MB of CSV, 220 MB decoded

# Runs in its own process: ingests each file after a warm-up on a quarter of it (a fresh
# process, as a new Dask worker, loads libraries and grows its allocator's arenas once, to
# about what streaming a file takes), resetting the peak resident set (Linux's VmHWM)
# before each, and prints the peak's growth per file: what the file itself took.
PROBE = """
import json, sys
from pathlib import Path
import pyarrow as pa
from tasks.lake import Lake
from tasks.spec import load_spec
from tests.support.ingesting import ingest_paths, with_ingest

def kib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

spec = with_ingest(load_spec(sys.argv[1]), partition_size="2MiB")
work = Path(sys.argv[2])
for warm in sorted(work.glob("warm.*")):
    ingest_paths([warm], spec, Lake(str(work / "lake-warm")))
grown = {}
for name in sys.argv[3:]:
    path = work / name
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    before = kib("VmRSS:")
    outcome = ingest_paths([path], spec, Lake(str(work / f"lake-{name}")))
    assert not outcome.quarantined, outcome.quarantined
    grown[name] = {
        "peak_growth": kib("VmHWM:") - before,
        "rows": sum(p.rows for p in outcome.partitions),
        "partitions": len(outcome.partitions),
    }
print(json.dumps(grown))
"""


@pytest.fixture(scope="module")
def large_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """The same 3.2 million rows as CSV, gzip CSV and Parquet (and a quarter of them in a
    warm-up file of each format), with each file's decoded (Arrow) size."""
    work = tmp_path_factory.mktemp("large")
    block = make_frame(BLOCK_ROWS, seed=3)
    header, body = encode(block, "csv").split(b"\n", 1)
    with open(work / "big.csv", "wb") as fh:
        fh.write(header + b"\n")
        for _ in range(BLOCKS):
            fh.write(body)
    with open(work / "big.csv", "rb") as src, gzip.open(work / "big.csv.gz", "wb", 1) as dst:
        shutil.copyfileobj(src, dst, 8 * 2**20)
    table = pa.Table.from_pandas(block, preserve_index=False)
    with pq.ParquetWriter(work / "big.parquet", table.schema) as writer:
        for _ in range(BLOCKS):
            writer.write_table(table)
    quarter = pa.concat_tables([table] * (BLOCKS // 4)).to_pandas()
    for fmt in ("csv", "csv.gz", "parquet"):
        (work / f"warm.{fmt}").write_bytes(encode(quarter, fmt))
    decoded = table.nbytes * BLOCKS
    return work, {"big.csv": decoded, "big.csv.gz": decoded, "big.parquet": decoded}


def test_ingesting_a_large_file_takes_a_fraction_of_its_size_in_memory(
    demo_spec: str, large_files: tuple[Path, dict[str, int]]
) -> None:
    work, decoded = large_files
    result = subprocess.run(
        [sys.executable, "-c", PROBE, demo_spec, str(work), *decoded],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    grown = json.loads(result.stdout.strip().splitlines()[-1])
    print(grown)
    for name, size in decoded.items():
        found = grown[name]
        assert found["rows"] == BLOCK_ROWS * BLOCKS and found["partitions"] > 50
        # The file's rows take `size` bytes decoded; ingesting it took at most a quarter.
        assert found["peak_growth"] * 4 < size, (name, found, size)
