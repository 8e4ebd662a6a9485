"""Prometheus metrics of the API.

With several workers (`tradelog serve --workers N`) each is a process of its own, and a
scrape reaches one of them: so `serve` points PROMETHEUS_MULTIPROC_DIR at a directory
of its run dir before they start, each worker's values live in files there, and every
scrape adds them all up (prometheus-client's multiprocess mode). One worker keeps them
in memory.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from eventlog.commands import AppendResult

__all__ = ["observe_append", "render"]

REGISTRY = CollectorRegistry()

APPEND_SECONDS = Histogram(
    "tradelog_append_seconds",
    "Time from a write's arrival at the writer to its durable acknowledgement",
    ["type"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
EVENTS_APPENDED = Counter(
    "tradelog_events_appended_total", "Events appended to the log", ["type"], registry=REGISTRY
)
REDIS_WRITE_FAILURES = Counter(
    "tradelog_redis_written_failures_total",
    "Appends acknowledged without their stream entry (the relay copies it later)",
    registry=REGISTRY,
)
PROJECTION_LAG = Gauge(
    "tradelog_projection_lag_events",
    "Events in the log not yet applied by a projector, per partition",
    ["projector", "partition"],
    registry=REGISTRY,
    multiprocess_mode="mostrecent",  # set at each scrape, by whichever worker answers it
)
PROJECTOR_HEARTBEAT_AGE = Gauge(
    "tradelog_projector_heartbeat_age_seconds",
    "Seconds since a projector last reported it was alive",
    ["projector"],
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)


def observe_append(kind: str, result: AppendResult, seconds: float, redis_enabled: bool) -> None:
    if not result.appended:
        return
    APPEND_SECONDS.labels(kind).observe(seconds)
    EVENTS_APPENDED.labels(kind).inc()
    if redis_enabled and not result.redis_written:
        REDIS_WRITE_FAILURES.inc()


def render() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker)  # type: ignore[no-untyped-call]
        return generate_latest(every_worker)
    return generate_latest(REGISTRY)
