"""The cluster config block: its fields' validation and defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from blocks.cluster import DaskClusterConfig


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_workers": 5, "max_workers": 2}, "min_workers \\(5\\) is more than max_workers"),
        ({"memory_per_worker": "lots"}, "'lots' is not a size"),
        ({"memory_per_worker": "1MB"}, "too little memory"),
        ({"mode": "address"}, "mode 'address' needs address"),
        ({"address": "tcp://h:1"}, "only used in mode 'address'"),
        ({"mode": "kubernetes", "namespace": "Not_Valid"}, "not a valid Kubernetes namespace"),
        ({"mode": "kubernetes", "image": " "}, "needs the image"),
        ({"mode": "cloud"}, "Input should be 'local', 'address' or 'kubernetes'"),
        ({"max_workers": 0}, "greater than or equal to 1"),
    ],
)
def test_invalid_config_is_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DaskClusterConfig(**fields)  # type: ignore[arg-type]
