"""``GET /healthz`` and ``GET /metrics``: what monitoring asks the daemon."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST


class Operations:
    """Health as JSON (200 when well, 503 when not) and the metrics in Prometheus' text format."""

    def __init__(self, health: Callable[[], Awaitable[dict[str, Any]]], metrics: Callable[[], bytes]) -> None:
        self.health = health
        self.metrics = metrics

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics_page)

    async def healthz(self, request: web.Request) -> web.Response:
        report = await self.health()
        return web.Response(status=200 if report["ok"] else 503, content_type="application/json",
                            text=json.dumps(report, ensure_ascii=False))

    async def metrics_page(self, request: web.Request) -> web.Response:
        await self.health()  # refreshes the queue gauges from the database
        response = web.Response(body=self.metrics())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
