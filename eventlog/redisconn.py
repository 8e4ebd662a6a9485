"""Connecting to Redis with bounded time-outs, so a down Redis costs little."""

from __future__ import annotations

import redis

from .settings import Settings

__all__ = ["connect"]


def connect(settings: Settings, timeout_ms: int | None = None) -> redis.Redis | None:
    """A client for the configured Redis, or None when Redis is disabled (empty URL).

    Connecting is lazy: this never fails because Redis is down.
    """
    if not settings.redis_enabled:
        return None
    timeout = (timeout_ms or settings.redis_timeout_ms) / 1000
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=0,
    )
