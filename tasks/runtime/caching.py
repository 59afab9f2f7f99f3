"""Prefect task caching for the per-partition stages: keys from content, results in the lake.

A cache key is the task's source plus the content identities that decide its result, and
nothing else (``ContentKey``):

``ingest-file``          the landing file's URI and the store's identity of its bytes (S3
                         ETag, or size and modification time on a disk), the schema hash
                         and the lake;
``validate-partition``   the partition's content hash and the expectation suite's hash.

DataFrames never enter a key: tasks receive references, and the hashes come from the spec
and from the partition manifest. Results are Prefect result records (JSON) under
``<lake>/runs/results/<task-name>/<key>``, written atomically through
:class:`blocks.results.LakeResultStorage`, so a run on another machine pointed at the same
lake reuses them. ``CacheOptions`` is the run's switch: ``refresh`` recomputes and replaces
every record, ``expiration_days`` stamps the records this run writes with an expiry.

A stage first looks its keys up from the flow (:func:`look_up`): work that is cached
never reaches the Dask cluster, so a run with nothing new starts no cluster for the stage.
What is not found is submitted as the cached task itself, so the record is written by
Prefect on the worker, and two runs racing on the same input still agree.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from prefect import Task, task, unmapped
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.context import TaskRunContext
from prefect.futures import PrefectFuture, wait
from prefect.results import ResultStore
from prefect.serializers import JSONSerializer
from prefect.utilities.hashing import hash_objects
from pydantic import BaseModel, ConfigDict, Field

from blocks.results import LakeResultStorage
from tasks.runtime.progress import StageProgress
from tasks.runtime.runner import narrow_stage

logger = logging.getLogger(__name__)

R = TypeVar("R")
# How often a mapped stage's progress is brought up to date.
PROGRESS_POLL_S = 1.0
# Lookups are single small reads; on S3 their latency, not bandwidth, is the cost.
LOOKUP_THREADS = 16


class CacheOptions(BaseModel):
    """How a run uses cached stage results (a flow parameter: a form in the Prefect UI)."""

    # Frozen: one default instance is shared by every flow signature.
    model_config = ConfigDict(frozen=True)

    refresh: bool = Field(
        default=False,
        description="Recompute every partition's ingest and validation result and replace "
        "the cached one, even when its inputs are unchanged.",
    )
    expiration_days: float | None = Field(
        default=None,
        gt=0,
        description="Results this run writes expire after this many days and are then "
        "recomputed. Empty: kept until their inputs change.",
    )

    @property
    def expiration(self) -> timedelta | None:
        return None if self.expiration_days is None else timedelta(days=self.expiration_days)


Identity = Callable[[Mapping[str, Any]], Mapping[str, Any]]


@dataclass
class ContentKey(CachePolicy):
    """Prefect cache policy: the task's source and the identities ``identity`` picks out.

    ``identity`` maps the task's parameters to the content hashes and settings that decide
    its result; anything it leaves out (the lake's credentials, a refresh flag, a landing
    file's new name) does not invalidate the cache.
    """

    identity: Identity | None = None

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        return self.key(task_ctx.task, inputs)

    def key(self, task: Task[Any, Any], inputs: Mapping[str, Any]) -> str:
        """The key for one call of ``task``; the same in the flow and on a Dask worker."""
        if self.identity is None:
            raise TypeError("ContentKey needs an identity function")
        digest = hash_objects(task_source(task), dict(self.identity(inputs)), raise_on_failure=True)
        # One folder per task keeps the lake browsable and the records of a task together.
        return f"{task.name}/{digest}"


def task_source(task: Task[Any, Any]) -> str:
    """The task's source code (what Prefect's ``TASK_SOURCE`` policy hashes)."""
    # Prefect keeps the source on the task, so it survives pickling to a worker.
    source = getattr(task, "source_code", None)
    return source if source is not None else inspect.getsource(task.fn)


def result_storage(lake: str, *, saved: bool = False) -> LakeResultStorage:
    """The lake's result storage; ``saved`` makes sure it is a block on the Prefect API.

    Prefect only accepts a saved block as a task's result storage (the result records name
    it). It is saved under a name derived from the lake URI, once per lake: later runs, on
    any machine using the same API, find it.
    """
    storage = LakeResultStorage(lake=lake)
    if not saved:
        return storage
    name = f"lake-{hashlib.sha256(lake.encode()).hexdigest()[:16]}"
    try:
        found = LakeResultStorage.load(name)
    except ValueError:  # not saved yet
        found = None
    if isinstance(found, LakeResultStorage) and found.lake == lake:
        return found
    storage.save(name, overwrite=True)
    return storage


def lake_cached(
    task: Task[Any, R], policy: ContentKey, *, lake: str, options: CacheOptions
) -> Task[Any, R]:
    """``task`` with its results cached in ``lake`` under ``policy``."""
    return task.with_options(
        cache_policy=policy,
        persist_result=True,
        result_storage=result_storage(lake, saved=True),
        # Readable records, and no pickles in the lake (a pickle ties a record to a Python).
        result_serializer="json",
        refresh_cache=options.refresh,
        cache_expiration=options.expiration,
    )


@dataclass(frozen=True)
class Lookup:
    """One call's cached result, or why there is none."""

    result: Any | None = None
    # A record exists but holds no result of the task's type (one written by an older
    # release, naming a class this code no longer has): it must be replaced, not reused.
    stale: bool = False

    @property
    def found(self) -> bool:
        return self.result is not None


def look_up(
    task: Task[Any, Any], *, lake: str, options: CacheOptions, calls: Sequence[Mapping[str, Any]]
) -> list[Lookup]:
    """Each call of a :func:`lake_cached` task looked up in the lake's records.

    A record that is missing, expired or unreadable (a store error, or a record from an
    incompatible version) counts as absent: computing again is always correct.
    """
    if options.refresh or not calls:
        return [Lookup() for _ in calls]
    policy = task.cache_policy
    if not isinstance(policy, ContentKey):
        raise TypeError(f"task {task.name!r} is not cached with a ContentKey policy")
    store = ResultStore(
        result_storage=result_storage(lake),
        serializer=JSONSerializer(),
        cache_result_in_memory=False,
    )
    expected = result_type(task)
    keys = [policy.key(task, call) for call in calls]
    with ThreadPoolExecutor(max_workers=min(LOOKUP_THREADS, len(keys))) as pool:
        return list(pool.map(lambda key: _read(store, key, expected), keys))


def result_type(task: Task[Any, Any]) -> Any:
    """The task's return annotation (records are checked against it)."""
    return get_type_hints(task.fn).get("return")


def conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` is what ``hint`` (a class, or a list of a class) describes; any
    other hint is taken on trust."""
    if isinstance(hint, type):
        return isinstance(value, hint)
    if get_origin(hint) is list and len(get_args(hint)) == 1:
        return isinstance(value, list) and all(conforms(v, get_args(hint)[0]) for v in value)
    return True


def _read(store: ResultStore, key: str, expected: Any) -> Lookup:
    try:
        record = store.read(key)
    except FileNotFoundError:
        return Lookup()
    except (OSError, ValueError, ImportError, AttributeError) as err:
        # ImportError/AttributeError: the record names a class this code no longer has.
        logger.warning("Cached result %s cannot be read, computing it again: %s", key, err)
        return Lookup(stale=True)
    expiration = record.metadata.expiration
    if expiration is not None and expiration <= datetime.now(UTC):
        return Lookup()
    if not conforms(record.result, expected):
        # Prefect decodes a record whose class it cannot import as a plain dict.
        logger.warning(
            "Cached result %s holds a %s, not a %s; computing it again",
            key,
            type(record.result).__name__,
            expected,
        )
        return Lookup(stale=True)
    return Lookup(result=record.result)


# The flow's lookup is a task of its own: it reads the lake, and shows in the run's graph.
@task(name="look-up", cache_policy=NO_CACHE)
def look_up_task(
    cached: Task[Any, Any],
    *,
    lake: str,
    options: CacheOptions,
    calls: Sequence[Mapping[str, Any]],
) -> list[Lookup]:
    """Look up each call of ``cached`` in the lake's result records."""
    return look_up(cached, lake=lake, options=options, calls=calls)


def follow_progress(
    futures: list[PrefectFuture[Any]], progress: StageProgress, *, already_done: int
) -> None:
    """Report ``already_done`` plus each finished future until all are done."""
    pending = futures
    progress.update(already_done)
    while pending:
        # Polled: a finished future (failed or not) counts; results are read afterwards.
        pending = list(wait(pending, timeout=PROGRESS_POLL_S).not_done)
        progress.update(already_done + len(futures) - len(pending))


@dataclass(frozen=True)
class CachedMap:
    """What :func:`map_cached` returns: results in input order, and where each came from."""

    results: list[Any]
    from_cache: list[bool]

    @property
    def computed(self) -> int:
        return self.from_cache.count(False)

    @property
    def reused(self) -> int:
        return self.from_cache.count(True)


def map_cached(
    task: Task[Any, R],
    policy: ContentKey,
    *,
    lake: str,
    options: CacheOptions,
    mapped: str,
    items: Sequence[Any],
    shared: Mapping[str, Any],
    progress: StageProgress | None = None,
) -> CachedMap:
    """``task.map`` over ``items`` (as parameter ``mapped``) with results cached in ``lake``.

    Called from a flow: looks every call up first and submits only the misses to the flow's
    task runner, so cached work never reaches (or starts) the stage's cluster. ``progress``
    counts cached items as done at once, then each call as it finishes.
    """
    if not items:
        # Nothing to look up or run: no task runs, no API calls.
        if progress is not None:
            progress.update(0)
        return CachedMap(results=[], from_cache=[])
    cached_task = lake_cached(task, policy, lake=lake, options=options)
    calls = [{mapped: item, **shared} for item in items]
    hits = look_up_task(cached_task, lake=lake, options=options, calls=calls)
    todo = [item for item, hit in zip(items, hits, strict=True) if not hit.found]
    if any(hit.stale for hit in hits):
        # A stale record would be read back by the task on the worker: replace them.
        cached_task = cached_task.with_options(refresh_cache=True)
    # One new file among many: a cluster for one, not for all of them.
    narrow_stage(len(todo))
    parameters: dict[str, Any] = {mapped: todo, **{k: unmapped(v) for k, v in shared.items()}}
    futures = list(cached_task.map(**parameters)) if todo else []
    if progress is not None:
        follow_progress(futures, progress, already_done=len(items) - len(todo))
    fresh = iter([future.result() for future in futures])
    return CachedMap(
        results=[hit.result if hit.found else next(fresh) for hit in hits],
        from_cache=[hit.found for hit in hits],
    )
