"""
The emulator's HTTP face as one ASGI application: the documented API and the ``/_emulator`` control API.

The routes are in :mod:`.api_routes` and :mod:`.control_routes`, what they are given in
:mod:`.dependencies`, the answer shapes in :mod:`.answers`; the rules live in :mod:`.service`.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from airflow_provider_whatsinfinity.emulator.answers import answer_errors_in_shape, failure
from airflow_provider_whatsinfinity.emulator.api_routes import api_router
from airflow_provider_whatsinfinity.emulator.control_routes import control_router
from airflow_provider_whatsinfinity.emulator.faults import FaultInjector
from airflow_provider_whatsinfinity.emulator.model import ApiError
from airflow_provider_whatsinfinity.emulator.service import EmulatedService

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.types import Message as AsgiMessage
    from starlette.types import Receive, Scope, Send

    from airflow_provider_whatsinfinity.emulator.config import EmulatorConfig
    from airflow_provider_whatsinfinity.emulator.dependencies import RequestLog

log = logging.getLogger("whatsinfinity.emulator")

REQUEST_LOG_SIZE = 10_000


@asynccontextmanager
async def _lifespan(api: FastAPI) -> AsyncIterator[None]:
    service: EmulatedService = api.state.service
    await service.resume()
    yield
    await service.aclose()


class EmulatorApp:
    """
    The emulated service as one ASGI application.

    Layers, outermost first: request IDs, the reset generation and the request log, injected faults,
    the FastAPI routes.

    :param config: How the service behaves.
    :raises RuntimeError: The ``--state-file`` cannot be read or written; the message says why.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.service = EmulatedService(config)
        self.requests: RequestLog = deque(maxlen=REQUEST_LOG_SIZE)
        self.api = FastAPI(
            title="WhatsInfinity emulator",
            description="A local stand-in for the WhatsInfinity API; see the /_emulator control endpoints.",
            lifespan=_lifespan,
            docs_url="/_emulator/docs",
            redoc_url=None,
            openapi_url="/_emulator/openapi.json",
        )
        answer_errors_in_shape(self.api)
        self.api.include_router(api_router)
        self.api.include_router(control_router)
        self.faults = FaultInjector(self.api)
        # What the routes' dependencies hand them (see .dependencies).
        self.api.state.service = self.service
        self.api.state.faults = self.faults
        self.api.state.request_log = self.requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Give the request an ID, note the generation it arrived in, log it, pass it to the fault layer."""
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        # Noted before any fault can delay it: after a reset this request must change nothing.
        state["generation"] = self.service.in_flight.generation
        header = (b"x-request-id", request_id.encode())
        record: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "status": None,
            "requestId": request_id,
            "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        }

        async def send_with_id(message: AsgiMessage) -> None:
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        if not scope["path"].startswith("/_emulator"):
            self.requests.append(record)
        try:
            await self.faults(scope, receive, send_with_id)
        except Exception:
            # FastAPI already answered 500 for errors inside a route; this catches the rest.
            log.exception("Unexpected error in request %s", request_id)
            if record["status"] is None:
                response = failure(request_id, ApiError(500, "Internal server error", "Unexpected error"))
                await response(scope, receive, send_with_id)
