"""The bad-input catalogue: one table of what users get wrong (spec, landing files, cluster
config, command line, webhook payloads) and the one clear message each ends in.

Every case runs against a lake whose champion a real pipeline run made. Afterwards nothing
is half-written (no temporary files), and the champion and its alias history are byte for
byte what they were. Mistakes on the command line are answered before Prefect starts, so
they also leave the lake exactly as it was. Bad landing files all land in one folder beside
good ones, and one real pipeline run takes them: each is set aside alone with its reason,
the good rows go on. The README's Fault tolerance section lists the same cases.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from starlette.testclient import TestClient

from blocks.cluster import DaskClusterConfig
from deployments.cli import main
from deployments.webhook import Gateway, create_app
from flows.pipeline import ml_pipeline
from tasks.demo_data import encode, make_frame
from tasks.errors import MlopsError
from tasks.records import PipelineResult, QuarantineRecord
from tasks.runtime.runner import resolve_cluster
from tests.support.paths import DEMO_SPEC
from tests.support.specs import demo_spec_with
from tests.support.webhooks import Recorder, s3_record, signed_headers

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]
SECRET = "catalogue-secret-0123456789"


@dataclass
class World:
    """A lake with a champion, the spec and landing it was made from, and what cases add."""

    root: Path
    spec: str
    landing: Path
    lake: Path
    cluster: str
    champion: str
    _bad_run: tuple[PipelineResult, dict[str, str]] | None = field(default=None, repr=False)

    def protected(self) -> dict[str, str]:
        """What no bad input may change: the alias (champion and history) and the champion's
        files. (A run on good rows may register a candidate beside it.)"""
        models = self.lake / "models" / "customers"
        files = [models / "aliases.json", *(models / "versions" / self.champion).rglob("*")]
        return {
            str(p.relative_to(models)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(files)
            if p.is_file()
        }

    def everything(self) -> dict[str, float]:
        return {str(p): p.stat().st_mtime for p in self.lake.rglob("*") if p.is_file()}

    def bad_landing_run(self) -> tuple[PipelineResult, dict[str, str]]:
        """Every bad file added to the landing folder the champion was made from, then one
        real pipeline run; each set-aside file's reason by file name."""
        if self._bad_run is None:
            for name, write in LANDING_FILES.items():
                write(self.landing / name, self.landing)
            result = ml_pipeline(
                spec=self.spec, source=str(self.landing), lake=str(self.lake), cluster=self.cluster
            )
            folder = self.lake / "datasets" / "customers" / "quarantine"
            records = [
                QuarantineRecord.model_validate_json(p.read_text()) for p in folder.iterdir()
            ]
            reasons = {Path(r.source_uri.removeprefix("file://")).name: r.reason for r in records}
            self._bad_run = (result, reasons)
        return self._bad_run


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, demo_source: Path, dask_client: Any) -> World:
    root = tmp_path_factory.mktemp("bad-input")
    data = yaml.safe_load(DEMO_SPEC.read_text())
    data["training"]["num_boost_round"] = 30
    # Many bad files beside four good ones: the run goes on while a fifth of them are good.
    data["validation"]["min_accepted_fraction"] = 0.2
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    landing = root / "landing"
    shutil.copytree(demo_source, landing)
    lake = root / "lake"
    cluster = str(dask_client.scheduler.address)
    first = ml_pipeline(spec=str(spec), source=str(landing), lake=str(lake), cluster=cluster)
    assert first.promoted and first.champion
    return World(root, str(spec), landing, lake, cluster, first.champion)


# Landing files ---------------------------------------------------------------------------------
FRAME = make_frame(300, seed=21, offset=50_000_000)


def _csv(path: Path, frame: Any) -> None:
    path.write_bytes(encode(frame, "csv"))


def _text_column(path: Path, column: str, values: list[str]) -> None:
    frame = FRAME.astype({column: "object"})
    frame.loc[: len(values) - 1, column] = values
    _csv(path, frame)


def _parquet_text_age_bad_in_a_later_row_group(path: Path) -> None:
    table = pa.Table.from_pandas(FRAME.astype({"age": "string"}), preserve_index=False)
    ages = table.column("age").to_pylist()
    ages[250] = "unknown"
    table = table.set_column(table.schema.get_field_index("age"), "age", pa.array(ages))
    pq.write_table(table, path, row_group_size=100)


def _truncated_gzip(path: Path) -> None:
    data = gzip.compress(encode(make_frame(3000, seed=22, offset=60_000_000), "csv"), mtime=0)
    path.write_bytes(data[: len(data) // 2])


def _later_extra_column(path: Path) -> None:
    lines = encode(FRAME, "csv").decode().splitlines()
    lines[200] += ",surprise"
    path.write_text("\n".join(lines) + "\n")


# File name -> how to write it (given its path and the landing folder).
LANDING_FILES: dict[str, Callable[[Path, Path], object]] = {
    "empty.csv": lambda p, _: p.write_bytes(b""),
    "header-only.csv": lambda p, _: p.write_text(",".join(FRAME.columns) + "\n"),
    "gone.csv": lambda p, _: p.symlink_to(p.parent / "never-written.csv"),
    "loop": lambda p, landing: p.symlink_to(landing),
    "latin-1.csv": lambda p, _: p.write_bytes(
        encode(FRAME, "csv").replace(b"month-to-month", b"mois-\xe0-mois", 1)
    ),
    "binary.csv": lambda p, _: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8),
    "no-age.csv": lambda p, _: _csv(p, FRAME.drop(columns=["age"])),
    "age-unknown.csv": lambda p, _: _text_column(p, "age", ["41", "unknown"]),
    "target-nan.csv": lambda p, _: _text_column(p, "churned", ["True", "NaN"]),
    "target-inf.csv": lambda p, _: _text_column(p, "churned", ["inf"]),
    "duplicate-keys.csv": lambda p, _: _csv(
        p, FRAME.assign(customer_id=FRAME["customer_id"].where(FRAME.index % 2 == 1, "dup"))
    ),
    "too-old.csv": lambda p, _: _csv(p, FRAME.assign(age=200)),
    "text-age-rowgroups.parquet": lambda p, _: _parquet_text_age_bad_in_a_later_row_group(p),
    "truncated.csv.gz": lambda p, _: _truncated_gzip(p),
    "extra-column-later.csv": lambda p, _: _later_extra_column(p),
}


# Spec files, for `mlops run --spec` ---------------------------------------------------------------
def _spec_with(**changes: Any) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_text(yaml.safe_dump(demo_spec_with(**changes), sort_keys=False))

    return write


def _columns_plus(name: str) -> Callable[[Path], None]:
    columns = yaml.safe_load(DEMO_SPEC.read_text())["columns"]
    return _spec_with(columns={**columns, name: {"type": "int"}})


SPEC_FILES: dict[str, Callable[[Path], object]] = {
    "not-a-mapping": lambda p: p.write_text("- name: customers\n- columns: {}\n"),
    "bad-yaml": lambda p: p.write_text("name: customers\ncolumns: {age: {type: int}\n"),
    "huge": lambda p: p.write_bytes(b"# padding\n" * (5 * 1024 * 1024)),
    "not-text": lambda p: p.write_bytes(b"\xff\xfe\x00n\x00a\x00m\x00e"),
    "a-folder": lambda p: p.mkdir(),
    "column-like-a-path": _columns_plus("../../etc/passwd"),
    "column-with-a-newline": _columns_plus("age\nchurned"),
    "target-not-a-column": _spec_with(target="churn"),
    "key-is-the-target": _spec_with(key="churned"),
    "unknown-expectation": _spec_with(expectations=[{"type": "expect_magic", "kwargs": {}}]),
    "partition-size": _spec_with(ingest={"partition_size": "lots"}),
    "name-like-a-prefix": _spec_with(name="customers/../other"),
}


# The catalogue ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One bad input: where it is given, what it is, and the message it must end in."""

    kind: str  # landing | spec | cli | cluster | webhook
    name: str
    message: str  # a substring of the one message, naming the file or field
    # Webhooks: the HTTP status. Command lines: the exit code (2: refused before Prefect
    # starts; 1: refused by the run's first task, before any data is read).
    status: int = 0


CASES = [
    # Landing files: each set aside alone, named, with why; the good files go on.
    Case("landing", "empty.csv", "empty.csv: file is empty"),
    Case("landing", "header-only.csv", "header-only.csv: file has a header but no rows"),
    Case("landing", "gone.csv", "gone.csv: a symbolic link to a file that does not exist"),
    Case("landing", "loop", "(not followed: nothing under it is read)"),
    Case("landing", "latin-1.csv", "latin-1.csv: cannot parse as csv: In CSV column #9"),
    Case("landing", "binary.csv", "binary.csv: cannot parse as csv"),
    Case("landing", "no-age.csv", "no-age.csv: missing column(s) 'age'"),
    Case("landing", "age-unknown.csv", "column 'age': cannot cast text to int"),
    Case("landing", "target-nan.csv", "expect_column_values_to_not_be_null(churned)"),
    Case("landing", "target-inf.csv", "column 'churned': cannot cast text to bool"),
    Case("landing", "duplicate-keys.csv", "expect_column_values_to_be_unique(customer_id)"),
    Case("landing", "too-old.csv", "expect_column_values_to_be_between(age)"),
    Case("landing", "text-age-rowgroups.parquet", "parquet: column 'age': cannot cast"),
    Case("landing", "truncated.csv.gz", "truncated.csv.gz: file is truncated or corrupt"),
    Case("landing", "extra-column-later.csv", "extra-column-later.csv: cannot parse as csv"),
    # Specs, given on the command line: exit 2 before Prefect starts.
    Case("spec", "missing", "missing.yaml: dataset spec not found"),
    Case("spec", "not-a-mapping", "must be a YAML mapping, got list"),
    Case("spec", "bad-yaml", "bad-yaml.yaml: not valid YAML"),
    Case("spec", "huge", "huge.yaml: a dataset spec is at most 1.00 MiB"),
    Case("spec", "not-text", "not-text.yaml: not UTF-8 text"),
    Case("spec", "a-folder", "a-folder.yaml: a dataset spec must be a YAML file, not a folder"),
    Case("spec", "column-like-a-path", "columns.../../etc/passwd: column names may not"),
    Case("spec", "column-with-a-newline", "columns.'age\\nchurned': column names may not"),
    Case("spec", "target-not-a-column", "target: 'churn' is not one of the columns"),
    Case("spec", "key-is-the-target", "key: the key column cannot be the target"),
    Case("spec", "unknown-expectation", "expectations.0 (expect_magic): expect_magic not found"),
    Case("spec", "partition-size", "ingest.partition_size: 'lots' is not a size"),
    Case("spec", "name-like-a-prefix", "name: String should match pattern"),
    # Other command-line arguments.
    Case("cli", "source-missing", "landing location does not exist"),
    Case("cli", "source-empty", "no landing files found"),
    Case("cli", "source-dot-dot-s3", "'..' is not a parent folder in an object store"),
    Case("cli", "lake-is-a-file", "the lake must be a folder, not a file"),
    Case("cli", "lake-unknown-scheme", "ftp://host/lake: not a lake location"),
    Case("cli", "lake-dot-dot-s3", "'..' is not a parent folder in an object store"),
    Case("cli", "negative-expiry", "--cache-expiration-days"),
    # Cluster configs: refused before any stage runs.
    Case("cluster", "address-without-host", "cluster 'tcp://'"),
    Case("cluster", "unknown-scheme", "cluster 'ftp://scheduler:8786'"),
    Case("cluster", "min-over-max", "min_workers"),
    Case("cluster", "memory-not-a-size", "memory_per_worker"),
    Case("cluster", "nobody-listening", "cannot reach the Dask scheduler at tcp://127.0.0.1:"),
    # Webhook payloads: refused with a status and the reason, no event emitted.
    Case("webhook", "body-a-list", "invalid generic payload", 400),
    Case("webhook", "s3-key-dot-dot", "must not contain '..' segments", 400),
    Case("webhook", "s3-key-control-character", "must not contain control characters", 400),
    Case("webhook", "s3-no-records", "Records", 400),
    Case("webhook", "s3-too-many-records", "Records", 400),
    Case("webhook", "source-outside-allowlist", "is not under an allowed source prefix", 403),
    Case("webhook", "dot-dot-escaping-the-allowlist", "must not contain '..' segments", 400),
]


def _run_cli(world: World, case: Case, tmp: Path, capsys: pytest.CaptureFixture[str]) -> str:
    spec, source, lake = world.spec, str(world.landing), str(world.lake)
    extra: list[str] = []
    if case.kind == "spec":
        path = tmp / f"{case.name}.yaml"
        if case.name in SPEC_FILES:
            SPEC_FILES[case.name](path)
        spec = str(path)
    elif case.name == "source-missing":
        source = str(tmp / "nowhere")
    elif case.name == "source-empty":
        (tmp / "empty").mkdir()
        source = str(tmp / "empty")
    elif case.name == "source-dot-dot-s3":
        source = "s3://bucket/landing/../private/"
    elif case.name == "lake-is-a-file":
        (tmp / "file").write_text("x")
        lake = str(tmp / "file")
    elif case.name == "lake-unknown-scheme":
        lake = "ftp://host/lake"
    elif case.name == "lake-dot-dot-s3":
        lake = "s3://bucket/lakes/../other-team/"
    elif case.name == "negative-expiry":
        extra = ["--cache-expiration-days", "-1"]
    started = time.monotonic()
    try:
        code = main(["run", "--spec", spec, "--source", source, "--lake", lake, *extra])
    except SystemExit as exit:  # argparse's usage errors
        code = int(exit.code or 0)
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == (case.status or 2), err
    assert err.splitlines()[-1].startswith(("error: ", "mlops run: error: ", "  ")), err
    assert "Traceback" not in err.splitlines()[-1], err
    if code == 2:  # answered before Prefect starts a flow run (which alone takes seconds)
        assert "Beginning flow run" not in err and elapsed < 10, (elapsed, err)
    return err


def _cluster(case: Case) -> str:
    configs: dict[str, Callable[[], Any]] = {
        "address-without-host": lambda: resolve_cluster("tcp://"),
        "unknown-scheme": lambda: resolve_cluster("ftp://scheduler:8786"),
        "min-over-max": lambda: DaskClusterConfig(min_workers=4, max_workers=2),
        "memory-not-a-size": lambda: DaskClusterConfig(memory_per_worker="lots"),
        "nobody-listening": lambda: resolve_cluster(f"tcp://127.0.0.1:{_closed_port()}"),
    }
    with pytest.raises((ValueError, MlopsError)) as raised:
        configs[case.name]()
    return str(raised.value)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _webhook(case: Case) -> tuple[int, str]:
    emitted = Recorder()
    gateway = Gateway(
        secret=SECRET, emit=emitted, allowed_sources=("s3://bucket/landing/", "/data/landing/")
    )

    def record(key: str) -> dict[str, Any]:
        return s3_record(key, bucket="bucket")

    bodies: dict[str, tuple[str, Any]] = {
        "body-a-list": ("generic", [{"dataset": "customers", "source_uri": "/data/landing/"}]),
        "s3-key-dot-dot": ("s3", {"Records": [record("landing/customers/../../private/x.csv")]}),
        "s3-key-control-character": ("s3", {"Records": [record("landing/customers/a%0Ab.csv")]}),
        "s3-no-records": ("s3", {"Records": []}),
        "s3-too-many-records": ("s3", {"Records": [record("landing/customers/a.csv")] * 1001}),
        "source-outside-allowlist": (
            "generic",
            {"dataset": "customers", "source_uri": "s3://bucket/private/customers/"},
        ),
        "dot-dot-escaping-the-allowlist": (
            "generic",
            {"dataset": "customers", "source_uri": "/data/landing/../../etc/"},
        ),
    }
    source, payload = bodies[case.name]
    body = json.dumps(payload).encode()
    headers = signed_headers(SECRET, body)
    with TestClient(create_app(gateway)) as client:
        response = client.post(f"/hooks/{source}", content=body, headers=headers)
    assert emitted.arrivals == []
    return response.status_code, str(response.json()["error"])


@pytest.fixture
def guarded(world: World) -> Iterator[World]:
    """``world``, checked after the case: the models untouched, nothing half-written."""
    before = world.protected()
    yield world
    assert world.protected() == before
    assert not [p for p in world.lake.rglob("*") if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.kind}:{c.name}" for c in CASES])
def test_bad_input_ends_in_one_clear_message_and_touches_nothing(
    case: Case, guarded: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = guarded
    if case.kind == "landing":
        result, reasons = world.bad_landing_run()
        # The good files' rows go on; with no new good rows, the champion is the model.
        assert result.files_accepted == 4 and result.files_quarantined == len(LANDING_FILES) - 1
        assert result.champion == world.champion == result.model_version
        if case.name == "loop":
            assert not [name for name in reasons if "loop" in name]
            return
        assert case.message in reasons[case.name], reasons[case.name]
        assert "\n" not in reasons[case.name]
        return
    if case.kind in ("spec", "cli"):
        before = world.everything()
        message = _run_cli(world, case, tmp_path, capsys)
        if not case.status:  # not a byte written: answered before any run
            assert world.everything() == before
    elif case.kind == "cluster":
        message = _cluster(case)
    else:
        status, message = _webhook(case)
        assert status == case.status, message
    assert case.message in message, message


def test_the_catalogue_has_thirty_cases_across_every_kind() -> None:
    kinds = {c.kind for c in CASES}
    assert kinds == {"landing", "spec", "cli", "cluster", "webhook"}
    assert len(CASES) >= 30 and len({(c.kind, c.name) for c in CASES}) == len(CASES)
    assert set(LANDING_FILES) == {c.name for c in CASES if c.kind == "landing"}
