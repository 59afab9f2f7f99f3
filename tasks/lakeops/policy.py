"""What a lake keeps (typed configuration only; ``mark`` acts on it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class RetentionPolicy(BaseModel):
    """What garbage collection keeps; everything these keep references is kept too.

    The defaults keep a lot: a gc with them reclaims only what is long unused.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The bound shows in the UI's form; the validator below says why it is there.
    keep_history: int = Field(
        default=10,
        json_schema_extra={"minimum": 1},
        description="Champions to keep from each model's alias history, newest first: the "
        "current champion and the rollback targets before it. At least 1 (the champion "
        "is always kept).",
    )
    keep_days: float = Field(
        default=30.0,
        ge=0,
        description="Model versions (and their data) registered within this many days are "
        "kept, promoted or not; so are Dask reports and unfinished trainings' checkpoints.",
    )
    keep_datasets: int = Field(
        default=5,
        json_schema_extra={"minimum": 1},
        description="Newest dataset versions to keep per dataset (at least 1: the latest).",
    )
    grace_hours: float = Field(
        default=24.0,
        ge=0,
        description="Anything written within this many hours is kept: the work of runs in "
        "progress, and of clocks that disagree.",
    )

    @field_validator("keep_history")
    @classmethod
    def _keeps_the_champion(cls, value: int) -> int:
        if value < 1:
            raise ValueError(
                f"{value}: must be at least 1; a policy keeping no champion would delete the "
                "model in use"
            )
        return value

    @field_validator("keep_datasets")
    @classmethod
    def _keeps_the_latest(cls, value: int) -> int:
        if value < 1:
            raise ValueError(
                f"{value}: must be at least 1; the latest dataset version is what the next "
                "run builds on"
            )
        return value
