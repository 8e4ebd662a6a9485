"""The bare HTTP ceiling: a Starlette app whose one write route does one XADD.

No validation, no log file, no projection: what uvicorn + Starlette + one Redis
round trip cost per request, to divide HTTP scenarios' figures by. Run by
`baselines.bare_xadd_server` in its own uvicorn process(es), configured through
the environment (`BENCH_REDIS_URL`, `BENCH_XADD_KEY`) because uvicorn's
`--factory` takes no arguments.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["create_app"]


def create_app() -> Starlette:
    url = os.environ["BENCH_REDIS_URL"]
    key = os.environ.get("BENCH_XADD_KEY", "bench:bare-xadd")
    client = aioredis.Redis.from_url(url)

    async def write(request: Request) -> Response:
        body = await request.body()
        # Trimmed (approximately: whole nodes, cheap) so a long run cannot fill Redis.
        await client.xadd(key, {"data": body}, maxlen=10_000, approximate=True)
        return JSONResponse({"success": True})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(
        routes=[Route("/xadd", write, methods=["POST"]), Route("/health", health)],
        lifespan=lifespan,
    )
