"""One split of scoring files, on a Dask worker: read, checked, predicted, profiled, written.

Splits are planned as ingestion plans them (``tasks/ingest/plan.py``): small files packed up
to the partition size, a large file alone and read as a stream. Each file is read and cast
with ingestion's reader (the target may be absent) and checked with the spec's
expectations that do not concern the target, on the whole batch first and file by file
only when the batch fails (as validation does). A file that cannot be read, cast or passes
no check is quarantined with the reason; the others are scored. A large file is scored
batch by batch as it streams, so a worker holds one batch, not the file.

Predictions go to a temporary Parquet file that is moved into place when the split is done
(``predictions/<name>/<model version>/<output id>.parquet``): a killed worker leaves no
partial output, and a retry writes the same file again.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.errors import PartitionError
from tasks.ingest.partitions import FETCH_THREADS, quarantine_record
from tasks.ingest.read import (
    FILE_ERRORS,
    FileReader,
    LandingReadError,
    file_error_reason,
    prefetch,
)
from tasks.lake import Lake
from tasks.records import (
    DataProfile,
    LandingFile,
    PartitionValidation,
    QuarantineRecord,
    ScoredSplit,
    ScoringModel,
    Split,
)
from tasks.score.predict import (
    MODEL_VERSION_COLUMN,
    load_booster,
    predict,
    prediction_columns,
    top_contributions,
)
from tasks.score.realized import add_sums, labeled_sums
from tasks.spec import DatasetSpec, stable_hash
from tasks.train.features import class_name, model_inputs
from tasks.train.profile import frame_profile, merge_profiles, prediction_profile
from tasks.validate.partition import validate_frame

# Bumped when a prediction file's columns change meaning.
PREDICTIONS_FORMAT = 1
SOURCE_COLUMN = "source_uri"
ROW_COLUMN = "row"


def output_id(split: Split, model: ScoringModel, spec: DatasetSpec) -> str:
    """A prediction file's content address: the split's files, the model, what is written."""
    return stable_hash(
        {
            "format": PREDICTIONS_FORMAT,
            "split": split.split_id,
            "model": model.version,
            "explain": spec.scoring.explain,
            "suite": stable_hash([e.model_dump(mode="json") for e in spec.scoring_expectations()]),
        }
    )


def scoring_suite_key(spec: DatasetSpec) -> str:
    return "score-" + stable_hash([e.model_dump(mode="json") for e in spec.scoring_expectations()])


@dataclass
class Batch:
    """Rows of one or more files, each file's rows consecutive, about to be scored."""

    pieces: list[tuple[LandingFile, FileReader, pa.Table, int]] = field(default_factory=list)
    # Kept as pieces are added (not summed again for each of thousands of small files).
    nbytes: int = 0

    def add(self, file: LandingFile, reader: FileReader, table: pa.Table, first: int) -> None:
        self.pieces.append((file, reader, table, first))
        self.nbytes += table.nbytes

    def without(self, uris: Collection[str]) -> Batch:
        """The batch less the pieces of ``uris``."""
        kept = Batch()
        for piece in self.pieces:
            if piece[0].uri not in uris:
                kept.add(*piece)
        return kept


@dataclass
class SplitScorer:
    """Scores a split's files in batches and collects what the run reports."""

    split: Split
    spec: DatasetSpec
    lake: Lake
    model: ScoringModel
    writer: pq.ParquetWriter | None = None
    temporary: str | None = None
    profiles: list[DataProfile] = field(default_factory=list)
    sums: list[dict[str, list[float]]] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)
    rows: int = 0
    # Files scored, and those with a row that lacks the target (a missing column counts).
    scored_files: set[str] = field(default_factory=set)
    unlabeled_files: set[str] = field(default_factory=set)
    # Seconds spent checking, predicting (and explaining), profiling and writing.
    seconds: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("check", "predict", "profile", "write"), 0.0)
    )
    _sink: Any = None

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - started

    def __post_init__(self) -> None:
        self.booster = load_booster(self.model.model_uri)
        profile = self.model.profile
        self.edges = (
            {name: f.edges for name, f in profile.features.items() if f.kind == "numeric"}
            if profile
            else {}
        )
        self.prediction_edges = (
            profile.prediction.edges if profile and profile.prediction is not None else []
        )
        self.expectations = self.spec.scoring_expectations()
        self.suite_key = scoring_suite_key(self.spec)

    # Checks ---------------------------------------------------------------------------
    def _failures(self, frame: pd.DataFrame, batch: Batch) -> dict[str, str]:
        """Files of the batch whose rows fail the expectations, with why (none: all pass)."""
        if not self.expectations:
            return {}
        label = batch.pieces[0][0].uri
        # Pass or fail first (the usual case, and cheaper); the reasons only on failure.
        if self._check(frame, label, result_format="BOOLEAN_ONLY").success:
            return {}
        failures: dict[str, str] = {}
        pieces = batch.pieces if len(batch.pieces) > 1 else []
        start = 0
        for file, _, table, _ in pieces:
            rows = frame.iloc[start : start + table.num_rows].reset_index(drop=True)
            start += table.num_rows
            result = self._check(rows, file.uri)
            if not result.success:
                failures[file.uri] = _reason(file.uri, result.expectations)
        # Every file passing on its own (ids repeated across files, say) leaves none at
        # fault: each row's prediction is still right, so all are scored.
        if not pieces:
            failures[label] = _reason(label, self._check(frame, label).expectations)
        return failures

    def _check(
        self,
        rows: pd.DataFrame,
        uri: str,
        *,
        result_format: Literal["BOOLEAN_ONLY", "SUMMARY"] = "SUMMARY",
    ) -> PartitionValidation:
        """The scoring expectations on ``rows`` of ``uri`` (GX on this worker)."""
        return validate_frame(
            rows,
            self.expectations,
            suite_key=self.suite_key,
            partition_id="",
            source_uri=uri,
            result_format=result_format,
        )

    # Scoring --------------------------------------------------------------------------
    def score(self, batch: Batch) -> dict[str, str]:
        """Score a batch; the files that failed the checks (not scored), with why."""
        if not batch.pieces:
            return {}
        table = pa.concat_tables([t for _, _, t, _ in batch.pieces])
        frame = table.to_pandas()
        with self.timed("check"):
            failed = self._failures(frame, batch)
        if failed:
            keep = np.concatenate(
                [np.full(t.num_rows, f.uri not in failed) for f, _, t, _ in batch.pieces]
            )
            frame = frame[keep].reset_index(drop=True)
            table = table.filter(pa.array(keep))
            batch = batch.without(failed)
        if batch.pieces:
            self._write(batch, frame, table)
        return failed

    def _write(self, batch: Batch, frame: pd.DataFrame, table: pa.Table) -> None:
        layout = self.model.layout
        with self.timed("predict"):
            inputs = model_inputs(frame, layout)
            predictions = predict(self.booster, inputs)
            explained = (
                top_contributions(
                    self.booster, inputs, layout, predictions, self.spec.scoring.explain
                )
                if self.spec.scoring.explain
                else {}
            )
        columns: dict[str, pa.Array | pa.ChunkedArray] = {}
        if self.spec.key is not None:
            columns[self.spec.key] = table.column(self.spec.key)
        columns[SOURCE_COLUMN] = pa.array(
            np.concatenate(
                [np.full(t.num_rows, f.uri, dtype=object) for f, _, t, _ in batch.pieces]
            ),
            pa.string(),
        ).dictionary_encode()
        columns[ROW_COLUMN] = pa.array(
            np.concatenate(
                [np.arange(first, first + t.num_rows) for _, _, t, first in batch.pieces]
            ),
            pa.int64(),
        )
        columns |= prediction_columns(layout, predictions) | explained
        columns[MODEL_VERSION_COLUMN] = pa.array(
            np.full(len(frame), self.model.version, dtype=object), pa.string()
        ).dictionary_encode()
        with self.timed("write"):
            out = pa.table(columns)
            if self.writer is None:
                self.temporary = self.lake.temporary(self.target())
                self._sink = self.lake.open_temporary(self.temporary)
                self.writer = pq.ParquetWriter(self._sink, out.schema, compression="zstd")
            self.writer.write_table(out)
        self.rows += len(frame)
        with self.timed("profile"):
            profile = frame_profile(inputs, layout, self.edges, raw=frame, rows_of="scored")
            self.profiles.append(
                profile.model_copy(
                    update={
                        "prediction": prediction_profile(layout, predictions, self.prediction_edges)
                    }
                )
            )
            self.sums.append(self._labeled(frame, predictions))
            self._note_labels(batch, frame)

    def _note_labels(self, batch: Batch, frame: pd.DataFrame) -> None:
        """Which files carry the target on every row (what may become training data)."""
        present = frame[self.model.layout.target].notna().to_numpy()
        start = 0
        for file, _, table, _ in batch.pieces:
            self.scored_files.add(file.uri)
            if not present[start : start + table.num_rows].all():
                self.unlabeled_files.add(file.uri)
            start += table.num_rows

    def _labeled(self, frame: pd.DataFrame, predictions: np.ndarray) -> dict[str, list[float]]:
        """Sums for the realized metric over the rows that carry the target."""
        layout = self.model.layout
        target = frame[layout.target]
        labeled = target.notna().to_numpy()
        if not labeled.any():
            return {}
        values = target[labeled]
        if layout.classes is not None:
            index = {c: i for i, c in enumerate(layout.classes)}
            # Each distinct label named once, not each row.
            found, uniques = pd.factorize(values)
            lookup = np.array([index.get(class_name(v), -1) for v in uniques], dtype=np.int64)
            codes = lookup[found]
            known = codes >= 0
            return labeled_sums(
                layout.task, codes[known], predictions[labeled][known], len(layout.classes)
            )
        return labeled_sums(layout.task, values.to_numpy(dtype="float64"), predictions[labeled], 0)

    def target(self) -> str:
        return self.lake.path(
            "predictions",
            self.spec.name,
            self.model.version,
            f"{output_id(self.split, self.model, self.spec)}.parquet",
        )

    def finish(self) -> str | None:
        """Move the predictions into place; their URI (None: no file scored)."""
        if self.writer is None or self.temporary is None:
            return None
        self.writer.close()
        self._sink.close()
        target = self.target()
        self.lake.commit(self.temporary, target)
        return self.lake.url_of(target)

    def abandon(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self._sink.close()
        if self.temporary is not None:
            self.lake.remove(self.temporary)


def _reason(uri: str, outcomes: list[Any]) -> str:
    failed = [o for o in outcomes if not o.success]
    described = "; ".join(
        f"{o.type}"
        + (f"({o.column})" if o.column else "")
        + (f": {o.unexpected_count} unexpected" if o.unexpected_count else "")
        + (f" e.g. {', '.join(o.partial_unexpected[:3])}" if o.partial_unexpected else "")
        for o in failed[:5]
    )
    return f"{uri}: failed {len(failed)} expectation(s): {described}"


def score_split(*, split: Split, spec: DatasetSpec, lake: Lake, model: ScoringModel) -> ScoredSplit:
    """Score one split's files with ``model``; quarantine each file that cannot be read,
    cast or checked, with the reason, and go on with the others."""
    started = time.perf_counter()
    scorer = SplitScorer(split=split, spec=spec, lake=lake, model=model)
    optional = frozenset({spec.target})
    target_bytes = spec.ingest.partition_bytes
    # A large file is alone in its split (see the planner) and scored as it streams; small
    # files are scored together, a batch of about a partition at a time.
    streamed = len(split.files) == 1
    batch = Batch()
    pool = ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="mlops-fetch")

    def set_aside(file: LandingFile, reader: FileReader, reason: str) -> None:
        scorer.quarantined.append(quarantine(lake, spec, file, reader, reason))

    def flush() -> None:
        nonlocal batch
        pieces = {f.uri: (f, r) for f, r, _, _ in batch.pieces}
        for uri, reason in scorer.score(batch).items():
            set_aside(*pieces[uri], reason)
        batch = Batch()

    def score_piece(
        file: LandingFile, reader: FileReader, tables: list[pa.Table], first: int
    ) -> None:
        single = Batch()
        single.add(file, reader, pa.concat_tables(tables), first)
        failed = scorer.score(single)
        if failed:
            raise PartitionError(failed[file.uri])

    try:
        for file, data in prefetch(split.files, pool):
            reader = FileReader(file, spec, data=data, optional=optional)
            own: list[pa.Table] = []
            held = first = 0
            try:
                for table in reader.tables():
                    own.append(table)
                    held += table.nbytes
                    if streamed and held >= target_bytes:
                        score_piece(file, reader, own, first)
                        first += sum(t.num_rows for t in own)
                        own, held = [], 0
                if streamed and own:
                    score_piece(file, reader, own, first)
            except LandingReadError:
                raise  # the store's failure, not the file's: the task is retried
            except FILE_ERRORS as err:
                reason = file_error_reason(file.uri, err)
                if streamed:
                    # Batches of the file scored already must not stand without the rest.
                    scorer.abandon()
                    scorer = SplitScorer(split=split, spec=spec, lake=lake, model=model)
                set_aside(file, reader, reason)
                continue
            if not streamed:
                batch.add(file, reader, pa.concat_tables(own), 0)
                if batch.nbytes >= target_bytes:
                    flush()
        flush()
        uri = scorer.finish()
    except BaseException:
        scorer.abandon()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    seconds = {k: round(v, 4) for k, v in scorer.seconds.items()}
    seconds["total"] = round(time.perf_counter() - started, 4)
    return ScoredSplit(
        split_id=split.split_id,
        seconds=seconds,
        files=split.files,
        model_version=model.version,
        predictions_uri=uri,
        rows=scorer.rows,
        profile=merge_profiles(scorer.profiles, rows_of="scored"),
        quarantined=scorer.quarantined,
        labeled=add_sums(scorer.sums),
        labeled_files=sorted(scorer.scored_files - scorer.unlabeled_files),
    )


def quarantine(
    lake: Lake, spec: DatasetSpec, file: LandingFile, reader: FileReader, reason: str
) -> QuarantineRecord:
    """Set a scoring file aside with ``reason`` (a record under ``predictions/<name>/``)."""
    record = quarantine_record(spec, file, reader, reason, stage="score")
    lake.write_json(
        lake.path("predictions", spec.name, "quarantine", f"{record.record_id}.json"), record
    )
    return record
