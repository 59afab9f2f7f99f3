"""Great Expectations Data Docs for a validation report, written into the lake.

Partitions are validated on Dask workers, each in its own ephemeral GX context, and their
results travel back as JSON (``PartitionValidation.gx_result``). Here, in one process, they
are put into a GX context's validation results store and rendered by GX's own site builder,
so the pages are the Data Docs GX users know. The site lives at
``<lake>/runs/data-docs/<dataset>/``: its ``index.html`` lists the latest validated version;
each version's pages stay under ``validations/``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from tasks.lake import Lake
from tasks.records import DatasetVersion, ValidationReport
from tasks.spec import DatasetSpec, ExpectationSpec
from tasks.validate.expectations import ephemeral_context, expectation, gx_version

# Great Expectations takes seconds to import: only rendering, which needs it, imports it.

SITE = "lake"


def site_path(lake: Lake, dataset: str, *parts: str) -> str:
    return lake.path("runs", "data-docs", dataset, *parts)


def build_site(
    report: ValidationReport,
    expectations: list[ExpectationSpec],
    directory: str,
    *,
    version_time: datetime,
) -> list[str]:
    """Render the report's partition results, and the suite they were validated against
    (``expectations``), as a GX Data Docs site in ``directory``.

    Returns the site's files, relative to ``directory``. Partitions whose cached result
    carries no GX result (none do since format 2) are left out.
    """
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResultSchema,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    context = ephemeral_context(
        {
            SITE: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": directory,
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        }
    )
    # Named as the workers named it (``partition.py``), so result pages link to its page.
    suite = gx.ExpectationSuite(name=f"suite-{report.expectations_hash}")
    for config in expectations:
        suite.add_expectation(expectation(config))
    context.suites.add(suite)
    schema = ExpectationSuiteValidationResultSchema()
    # Pages are keyed by the dataset version (and the suite), not by the run: a re-run of
    # the same version rewrites the same pages instead of adding a copy.
    run_id = RunIdentifier(
        run_name=f"{report.dataset}-{report.dataset_version}", run_time=version_time
    )
    # Each partition's result, and each file's of a packed partition that failed.
    for partition in [*report.partitions, *report.segments]:
        if partition.gx_result is None:
            continue
        result: Any = schema.load(partition.gx_result)
        # Named after the landing file: that is what an operator looks for in the index.
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", partition.source_uri.rsplit("/", 1)[-1])
        batch = f"{name.strip('-')}-{partition.partition_id[:12]}"
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
            run_id=run_id,
            batch_identifier=batch,
        )
        context.validation_results_store.set(key, result)
    context.build_data_docs(site_names=[SITE])
    return sorted(
        os.path.relpath(os.path.join(root, name), directory)
        for root, _dirs, names in os.walk(directory)
        for name in names
    )


def site_files(directory: str, files: list[str]) -> list[str]:
    """What the lake needs of a built site: its pages, the static assets they reference
    (GX ships megabytes of images and fonts for features these pages do not use; styles
    and scripts come from CDNs), and the index last, as it links pages that must exist."""
    pages = [f for f in files if f.endswith(".html")]
    referenced: set[str] = set()
    for page in pages:
        with open(os.path.join(directory, page), encoding="utf-8") as fh:
            referenced.update(re.findall(r"static/[\w./-]+", fh.read()))
    assets = sorted(f for f in files if f in referenced)
    return assets + sorted(pages, key=lambda f: (f == "index.html", f))


def docs_digest(report: ValidationReport, spec: DatasetSpec, version: DatasetVersion) -> str:
    """Everything the pages are rendered from: the same digest means the same pages."""
    parts = [
        # Not when the report was written: a re-run's report differs only in that.
        report.model_dump_json(exclude={"created_at"}),
        spec.expectations_hash(),
        version.created_at.isoformat(),
        gx_version(),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def write_data_docs(
    report: ValidationReport, spec: DatasetSpec, version: DatasetVersion, lake: Lake
) -> str:
    """Build the report's Data Docs and copy them into the lake; the index page's URI.

    A site already rendered from the same report is left as it is (a re-run with nothing
    new then skips GX altogether).
    """
    index = site_path(lake, report.dataset, "index.html")
    marker = site_path(lake, report.dataset, "rendered.json")
    digest = docs_digest(report, spec, version)
    if lake.exists(marker) and lake.exists(index):
        with suppress(ValueError, KeyError, TypeError):
            if lake.read_json(marker)["digest"] == digest:
                return lake.url_of(index)
    with tempfile.TemporaryDirectory(prefix="mlops-data-docs-") as directory:
        files = build_site(
            report,
            spec.all_expectations(),
            directory,
            version_time=version.created_at.astimezone(UTC),
        )
        for relative in site_files(directory, files):
            target = site_path(lake, report.dataset, relative)
            # Static assets never change: written once per site.
            if relative.startswith("static/") and lake.exists(target):
                continue
            with open(os.path.join(directory, relative), "rb") as fh:
                lake.write_bytes(target, fh.read())
    # Written last: a site interrupted half-way is rendered again next time.
    lake.write_json(marker, {"digest": digest, "dataset_version": version.version})
    return lake.url_of(index)
