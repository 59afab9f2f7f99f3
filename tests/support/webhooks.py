"""What the webhook gateway's tests give it as ``emit``: a recorder of the arrivals."""

from __future__ import annotations

from deployments.webhook import Arrival


class Recorder:
    """Records every arrival the gateway emits; returns an event id like Prefect's."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []

    def __call__(self, arrival: Arrival) -> str:
        self.arrivals.append(arrival)
        return f"event-{len(self.arrivals)}"
