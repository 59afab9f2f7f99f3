"""The ``mlops`` command: run the pipeline, make demo data, operate the model registry."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from deployments import lake_commands
from deployments.early_api import early_api

if TYPE_CHECKING:
    from tasks.records import PipelineResult, ScoringResult

# Defaults for a local run; any value the user set wins.
_ENV_DEFAULTS = {
    # A fresh ephemeral Prefect API migrates its database first; 20 s (Prefect's default)
    # is not enough on a small or busy machine.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    # The ephemeral server's telemetry would phone home from machines that may have no
    # network, and competes with the run for the SQLite database.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    # Cluster start/stop chatter drowns the run's own log; warnings still show.
    "DASK_LOGGING__DISTRIBUTED": "warning",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops", description="Landing files to a safely promoted XGBoost model."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the whole pipeline (ingest, validate, train, promote)")
    run.add_argument("--spec", required=True, help="dataset spec YAML (path or URI)")
    run.add_argument("--source", required=True, help="landing folder or file (path or s3:// URI)")
    run.add_argument("--lake", required=True, help="lake root (path or s3:// URI)")
    run.add_argument(
        "--cluster",
        default="local",
        help="where each stage's Dask cluster runs: local (default), kubernetes, a scheduler "
        "address (tcp://host:8786) or the name of a saved MLOps Dask Cluster block",
    )
    run.add_argument(
        "--refresh",
        action="store_true",
        help="ingest and validate every file again, replacing the cached results in the lake",
    )
    run.add_argument(
        "--cache-expiration-days",
        type=_positive("days"),
        metavar="DAYS",
        help="cached results this run writes expire after DAYS (default: never)",
    )
    run.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    run.add_argument(
        "--no-progress", action="store_true", help="no per-stage progress lines on stderr"
    )

    demo = sub.add_parser("demo-data", help="write synthetic landing files for the demo spec")
    demo.add_argument("--out", required=True, help="folder to write the landing files to")
    demo.add_argument("--rows", type=int, default=200_000)
    demo.add_argument("--files", type=int, default=8)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--defects", action="store_true", help="damage some files on purpose")
    demo.add_argument(
        "--drift",
        action="append",
        default=[],
        metavar="COLUMN",
        help="shift this column (numbers --drift-scale times what they were, a fifth of a "
        "category's values new), for a scoring batch that drifted (repeatable)",
    )
    demo.add_argument("--drift-scale", type=float, default=1.5, metavar="FACTOR")
    demo.add_argument(
        "--unlabeled", action="store_true", help="leave the target out (a batch to score)"
    )

    score = sub.add_parser(
        "score", help="score landing files with the champion (or a version) and measure drift"
    )
    score.add_argument("--spec", required=True, help="dataset spec YAML (path or URI)")
    score.add_argument("--source", required=True, help="folder or file to score (path or s3://)")
    score.add_argument("--lake", required=True, help="lake root (path or s3:// URI)")
    score.add_argument(
        "--model", default="champion", help="model version to score with (default: champion)"
    )
    score.add_argument(
        "--cluster",
        default="local",
        help="where the stage's Dask cluster runs (as for run)",
    )
    score.add_argument(
        "--refresh", action="store_true", help="score every file again, replacing cached results"
    )
    score.add_argument(
        "--rescore",
        action="store_true",
        help="score with the champion files an earlier champion scored (default: its "
        "predictions stand)",
    )
    score.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    score.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")

    registry = sub.add_parser("registry", help="inspect and operate the model registry")
    registry.add_argument("--lake", required=True, help="lake root (path or s3:// URI)")
    rsub = registry.add_subparsers(dest="action", required=True)
    listing = rsub.add_parser("list", help="every version, oldest first; * marks the champion")
    listing.add_argument("model")
    listing.add_argument("--json", action="store_true")
    show = rsub.add_parser("show", help="a version's metadata (default: the champion)")
    show.add_argument("model")
    show.add_argument("version", nargs="?")
    rollback = rsub.add_parser("rollback", help="make the previous (or a given) version champion")
    rollback.add_argument("model")
    rollback.add_argument("--to", help="version to make champion (default: the previous champion)")
    rollback.add_argument("--reason", default="")
    promote = rsub.add_parser("promote", help="make a given version champion by hand")
    promote.add_argument("model")
    promote.add_argument("version")
    promote.add_argument("--reason", default="")

    lake_commands.add_parsers(sub)

    setup = sub.add_parser(
        "setup",
        help="register block types, create default blocks, the work pools and the alert "
        "automations on the Prefect server in PREFECT_API_URL (idempotent)",
    )
    target = setup.add_mutually_exclusive_group()
    target.add_argument(
        "--notify",
        metavar="URL",
        help="where alerts go: a Slack incoming webhook, any http(s) URL (JSON POST) or an "
        "apprise URL such as mailto://...; saved as the 'mlops-alerts' block",
    )
    target.add_argument(
        "--notify-block",
        metavar="TYPE/NAME",
        help="send alerts through a notification block made in the UI, e.g. slack-webhook/oncall",
    )
    setup.add_argument(
        "--late-after",
        type=_positive("minutes"),
        default=15.0,
        metavar="MINUTES",
        help="alert when a run is still Late this long after it was due (default 15)",
    )

    webhook = sub.add_parser("webhook", help="the webhook gateway (signed HTTP -> Prefect events)")
    wsub = webhook.add_subparsers(dest="action", required=True)
    serve = wsub.add_parser("serve", help="serve POST /hooks/s3, /hooks/generic and /healthz")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8787)
    serve.add_argument(
        "--config-block",
        metavar="NAME",
        help="a saved MLOps Webhook Gateway block: its allowlist and prefixes, to which the "
        "options below add",
    )
    serve.add_argument(
        "--secret-block",
        help="Prefect Secret block holding the shared secret (default: $MLOPS_WEBHOOK_SECRET)",
    )
    serve.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="S3_PREFIX=NAME",
        help="map an S3 landing prefix to a dataset (repeatable; default: the folder's name)",
    )
    serve.add_argument(
        "--scoring",
        action="append",
        default=[],
        metavar="PREFIX=NAME",
        help="files under this prefix (s3:// or a path) are to be scored with the dataset's "
        "champion, not trained on (repeatable)",
    )
    allow = serve.add_mutually_exclusive_group()
    allow.add_argument(
        "--allow-source",
        action="append",
        default=[],
        metavar="PREFIX",
        help="a location notifications may name (s3://bucket/prefix/ or an absolute path; "
        "repeatable); anything else is refused with 403",
    )
    allow.add_argument(
        "--allow-any-source",
        action="store_true",
        help="accept any location a signed sender names (without an allowlist the gateway "
        "refuses to start)",
    )
    return parser


def _positive(unit: str) -> Callable[[str], float]:
    """An argparse type: a number of ``unit`` above 0."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {unit}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text}: must be more than 0 {unit}")
        return value

    return parse


def _refuse(found: Sequence[str | None]) -> int:
    """Exit code 2 with one line per problem; 0 to go ahead."""
    problems = [p for p in found if p]
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 2 if problems else 0


def _preflight(*, spec: str, lake: str, source: str) -> int:
    """Exit code 2 with one line per problem when the spec, source or lake is wrong (before
    Prefect starts); 0 to go ahead."""
    from deployments.preflight import problems

    return _refuse(problems(spec=spec, lake=lake, source=source))


def _run(args: argparse.Namespace) -> int:
    # First, before Prefect is imported: the temporary API (no server named) starts while
    # this command imports Prefect, checks its inputs and imports the flows.
    with early_api() as early:
        if code := _preflight(spec=args.spec, lake=args.lake, source=args.source):
            return code
        from deployments.server import ephemeral_api_started

        # The spec's expectations are checked and the flows imported while the temporary
        # API comes up.
        with ephemeral_api_started(early):
            from deployments.preflight import expectations_problem

            if code := _refuse([expectations_problem(spec=args.spec, lake=args.lake)]):
                return code
            # Subcommands import what they use when they run: `mlops --help` stays instant.
            from flows.pipeline import ml_pipeline
            from tasks.runtime.caching import CacheOptions

        cache = CacheOptions(refresh=args.refresh, expiration_days=args.cache_expiration_days)
        with _progress_shown(not args.no_progress):
            result = ml_pipeline(
                spec=args.spec,
                source=args.source,
                lake=args.lake,
                cluster=args.cluster,
                cache=cache,
            )
    return _print_result(result, as_json=args.json)


def _score(args: argparse.Namespace) -> int:
    with early_api() as early:
        if code := _preflight(spec=args.spec, lake=args.lake, source=args.source):
            return code
        from deployments.server import ephemeral_api_started

        with ephemeral_api_started(early):
            from flows.score import score_flow
            from tasks.runtime.caching import CacheOptions

        with _progress_shown(not args.no_progress):
            result = score_flow(
                spec=args.spec,
                source=args.source,
                lake=args.lake,
                model=args.model,
                cluster=args.cluster,
                cache=CacheOptions(refresh=args.refresh),
                rescore=args.rescore,
            )
    return _print_result(result, as_json=args.json)


@contextlib.contextmanager
def _progress_shown(shown: bool) -> Iterator[None]:
    """Per-stage progress bars on stderr while the block runs (``--no-progress``: none)."""
    from deployments.progress import ProgressDisplay
    from tasks.runtime.progress import progress_listener

    with contextlib.ExitStack() as stack:
        if shown:
            display = stack.enter_context(ProgressDisplay())
            stack.enter_context(progress_listener(display))
        yield


def _print_result(result: PipelineResult | ScoringResult, *, as_json: bool) -> int:
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        print("\n" + result.summary())
    return 0


def _demo_data(args: argparse.Namespace) -> int:
    from tasks.demo_data import write_demo_data

    written = write_demo_data(
        args.out,
        rows=args.rows,
        files=args.files,
        seed=args.seed,
        defects=args.defects,
        drift=args.drift,
        drift_scale=args.drift_scale,
        unlabeled=args.unlabeled,
    )
    for f in written:
        print(f"{f.path}\t{f.rows} rows" + (f"\tdefect: {f.defect}" if f.defect else ""))
    return 0


def _registry(args: argparse.Namespace) -> int:
    from blocks.registry import ModelRegistry

    registry = ModelRegistry(lake=args.lake)
    if args.action == "list":
        champion = registry.champion(args.model)
        versions = registry.versions(args.model)
        if args.json:
            rows: list[dict[str, Any]] = [
                {
                    "version": m.version,
                    "champion": m.version == champion,
                    "created_at": m.created_at.isoformat(),
                    "dataset_version": m.dataset_version,
                    "metric": m.metric,
                    "value": m.metrics.get(m.metric),
                }
                for m in versions
            ]
            print(json.dumps(rows, indent=2))
            return 0
        if not versions:
            print(f"model '{args.model}' has no versions in {args.lake}")
        for m in versions:
            mark = "*" if m.version == champion else " "
            value = m.metrics.get(m.metric)
            shown = "n/a" if value is None else f"{value:.4f}"
            print(
                f"{mark} {m.version}  {m.created_at:%Y-%m-%d %H:%M:%S}  data {m.dataset_version}  "
                f"{m.metric}={shown}"
            )
        return 0
    if args.action == "show":
        version = args.version or registry.champion(args.model)
        if version is None:
            print(f"error: model '{args.model}' has no champion; name a version", file=sys.stderr)
            return 1
        document = registry.metadata(args.model, version).model_dump(mode="json")
        profile = registry.profile(args.model, version)
        document["profile"] = profile_summary(profile) if profile else None
        print(json.dumps(document, indent=2))
        return 0
    if args.action == "rollback":
        decision = registry.rollback(args.model, to=args.to, reason=args.reason)
    else:
        decision = registry.promote(args.model, args.version, reason=args.reason)
    print(f"champion of {args.model}: {decision.champion_before} -> {decision.champion_after}")
    return 0


def profile_summary(profile: Any) -> dict[str, Any]:
    """A training profile in brief: rows, and per feature its kind, null rate and bins."""

    def brief(feature: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": feature.kind,
            "null_fraction": round(feature.null_fraction, 4),
        }
        if feature.kind == "numeric":
            out["edges"] = [round(e, 4) for e in feature.edges]
        else:
            top = sorted(feature.categories.items(), key=lambda kv: -kv[1])[:10]
            out["categories"] = {name: count for name, count in top}
        return out

    return {
        "rows": profile.rows,
        "rows_of": profile.rows_of,
        "features": {name: brief(f) for name, f in profile.features.items()},
        "prediction": brief(profile.prediction) if profile.prediction else None,
    }


def _server_check() -> int:
    """Exit 2 with one line unless the configured Prefect server takes this client."""
    from deployments.server import server_problem

    if problem := server_problem():
        print(f"error: {problem}", file=sys.stderr)
        return 2
    return 0


def _setup(args: argparse.Namespace) -> int:
    from deployments.setup import setup

    if code := _server_check():
        return code
    late_after = timedelta(minutes=args.late_after)
    for step in setup(notify=args.notify, notify_block=args.notify_block, late_after=late_after):
        print(step)
    return 0


def _webhook(args: argparse.Namespace) -> int:
    from blocks.gateway import WebhookGatewayConfig
    from deployments.setup import WEBHOOK_SECRET_ENV
    from deployments.webhook import gateway_of, serve

    # Blocks are read from the server, so it is checked first when there are any; otherwise
    # the options are checked first (answered without a network call), the server after.
    blocks = bool(args.config_block or args.secret_block)
    if blocks and (code := _server_check()):
        return code
    # Block.load is sync here (no event loop); typed for both ways Prefect calls it.
    saved: WebhookGatewayConfig = (
        WebhookGatewayConfig.load(args.config_block)  # type: ignore[assignment]
        if args.config_block
        else WebhookGatewayConfig()
    )
    config = saved.with_options(
        allowed_sources=args.allow_source,
        allow_any_source=args.allow_any_source,
        datasets=args.dataset,
        scoring=args.scoring,
        secret_block=args.secret_block,
    )
    gateway = gateway_of(config, secret_env=WEBHOOK_SECRET_ENV)
    if not blocks and (code := _server_check()):
        return code
    serve(gateway, host=args.host, port=args.port)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name, value in _ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    from tasks.errors import MlopsError

    handlers = {
        "run": _run,
        "score": _score,
        "demo-data": _demo_data,
        "registry": _registry,
        "setup": _setup,
        "webhook": _webhook,
        "lake": lake_commands.lake,
        "lineage": lake_commands.lineage,
    }
    try:
        return handlers[args.command](args)
    except (MlopsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # the run's log above has the traceback; end on one clear line
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


def command() -> NoReturn:
    """The ``mlops`` command (console script and ``python -m deployments.cli``): :func:`main`,
    then an exit that skips tearing the interpreter down.

    After a run, freeing every module and object of Prefect, pandas, Dask and the rest took
    1.1-1.4 s here, after the command was done and its exit handlers had run. Exit handlers
    run last-registered first, so the one registered here runs after every handler the
    command's own work registered (Prefect's temporary API stopped, Dask's and
    multiprocessing's processes gone; Prefect's log and event workers are drained even
    before exit handlers run). Handlers registered before it (at import of the few modules
    this one imports) would be skipped: it runs the only one of those, logging's, itself.
    Then it flushes the standard streams and leaves with the command's exit status.
    :func:`main` alone (tests, Python callers) exits nothing.
    """
    status = [1]  # an exception that escapes main ends with 1, as Python's own exit would
    atexit.register(_leave_now, status)
    try:
        status[0] = main()
    except SystemExit as stop:  # argparse: --help, a usage error
        code = stop.code
        status[0] = code if isinstance(code, int) else (0 if code is None else 1)
        raise
    except KeyboardInterrupt:  # before main's own handler (parsing the arguments)
        status[0] = 130
        raise
    sys.exit(status[0])


def _leave_now(status: list[int]) -> None:
    try:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe, a closed file
                stream.flush()
    finally:
        os._exit(status[0])


if __name__ == "__main__":
    command()
