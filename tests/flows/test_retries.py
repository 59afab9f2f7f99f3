from __future__ import annotations

import pytest
from prefect import flow, task

from tasks.errors import SourceError
from tasks.retries import retry_unless_data_error

pytestmark = pytest.mark.timeout(120)


def test_bad_data_is_not_retried_but_io_errors_are() -> None:
    attempts: list[str] = []

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_unless_data_error)
    def flaky(kind: str) -> str:
        attempts.append(kind)
        if kind == "data":
            raise SourceError("landing.csv: missing column 'x'")
        if attempts.count("io") < 3:
            raise OSError("connection reset")
        return "ok"

    @flow
    def run(kind: str) -> str:
        return flaky(kind)

    with pytest.raises(SourceError):
        run("data")
    assert attempts.count("data") == 1
    assert run("io") == "ok"
    assert attempts.count("io") == 3
