"""
The emulator's HTTP face: the documented WhatsInfinity endpoints and the ``/_emulator`` control API.

Bodies are read and checked in :mod:`.bodies`; the rules live in :mod:`.service`.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_whatsinfinity.emulator.bodies import (
    bool_field,
    dry_run_payload,
    parse_message,
    phone_field,
    read_json_object,
    session_id_field,
    string_field,
)
from airflow_provider_whatsinfinity.emulator.faults import Fault, FaultInjector, FaultSpecError, error_title
from airflow_provider_whatsinfinity.emulator.model import ApiError, Session, bad_request
from airflow_provider_whatsinfinity.emulator.service import EmulatedService
from airflow_provider_whatsinfinity.spec import MAX_API_KEY_LENGTH, MIN_API_KEY_LENGTH, PHONE_PATTERN

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.types import Message as AsgiMessage
    from starlette.types import Receive, Scope, Send

    from airflow_provider_whatsinfinity.emulator.config import EmulatorConfig

log = logging.getLogger("whatsinfinity.emulator")

REQUEST_LOG_SIZE = 10_000


def success(request: Request, data: Any) -> JSONResponse:
    """
    Return a success answer in the documented shape.

    :param request: The request answered.
    :param data: The ``data`` member.
    """
    return JSONResponse({"success": True, "requestId": request.state.request_id, "data": data})


def failure(request_id: str, error: ApiError) -> JSONResponse:
    """
    Return an error answer in the documented shape.

    :param request_id: The request's ID.
    :param error: What went wrong.
    """
    body = {"success": False, "requestId": request_id, "error": error.error, "details": error.details}
    body.update(error.extra)
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


class EmulatorApp:
    """
    The emulated service as one ASGI application.

    Layers, outermost first: request IDs, the reset generation and the request log, injected faults,
    the FastAPI routes.

    :param config: How the service behaves.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.service = EmulatedService(config)
        self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.api = self._build_api()
        self.faults = FaultInjector(self.api)

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

    # Routes ------------------------------------------------------------------------------------

    def _build_api(self) -> FastAPI:
        emulator = self.service

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            await emulator.resume()
            yield
            await emulator.aclose()

        api = FastAPI(
            title="WhatsInfinity emulator",
            description="A local stand-in for the WhatsInfinity API; see the /_emulator control endpoints.",
            lifespan=lifespan,
            docs_url="/_emulator/docs",
            redoc_url=None,
            openapi_url="/_emulator/openapi.json",
        )

        def request_id(request: Request) -> str:
            return str(request.state.request_id)

        @api.exception_handler(ApiError)
        async def api_error(request: Request, exc: ApiError) -> JSONResponse:
            return failure(request_id(request), exc)

        @api.exception_handler(StarletteHTTPException)
        async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
            if exc.status_code == 404:
                details = f"No endpoint {request.method} {request.url.path}; see the API reference"
            elif exc.status_code == 405:
                details = f"Method {request.method} is not allowed on {request.url.path}"
            else:
                details = str(exc.detail)
            error = ApiError(exc.status_code, error_title(exc.status_code), details, headers=exc.headers)
            return failure(request_id(request), error)

        @api.exception_handler(Exception)
        async def unexpected(request: Request, exc: Exception) -> JSONResponse:
            error = ApiError(500, "Internal server error", "Unexpected error; report this requestId")
            return failure(request_id(request), error)

        body_of = self._body_of

        def authenticate(request: Request, session_id: str) -> Session:
            key = request.headers.get("x-api-key")
            if not key:
                raise ApiError(401, "Unauthorized", "Invalid or missing API key")
            session = emulator.get(session_id)
            if not session.key_matches(key):
                raise ApiError(401, "Unauthorized", "Invalid or missing API key")
            return session

        @api.post("/create-session")
        async def create_session(request: Request) -> JSONResponse:
            body = await body_of(request)
            session_id = session_id_field(body.get("sessionId"))
            api_key = string_field(body, "apiKey")
            assert api_key is not None
            if not MIN_API_KEY_LENGTH <= len(api_key) <= MAX_API_KEY_LENGTH or not api_key.isprintable():
                raise bad_request(
                    f"apiKey must be {MIN_API_KEY_LENGTH} to {MAX_API_KEY_LENGTH} printable characters "
                    f"(got {len(api_key)})"
                )
            session = emulator.create_session(session_id, api_key)
            return success(
                request, {"sessionId": session.session_id, "status": session.status, "hasQR": session.has_qr}
            )

        @api.get("/qr/{session_id}")
        async def qr(request: Request, session_id: str) -> Response:
            session = authenticate(request, session_id_field(session_id))
            png = emulator.qr_png(session)
            headers = {"Cache-Control": "no-store", "X-QR-Expires-In": str(emulator.qr_expires_in(session))}
            return Response(png, media_type="image/png", headers=headers)

        @api.post("/pairing-code")
        async def pairing_code(request: Request) -> JSONResponse:
            body = await body_of(request)
            session = authenticate(request, session_id_field(body.get("sessionId")))
            code = emulator.request_pairing_code(session, phone_field(body, "phoneNumber"))
            return success(
                request, {"sessionId": session.session_id, "pairingCode": code, "status": session.status}
            )

        @api.get("/check-session/{session_id}")
        async def check_session(request: Request, session_id: str) -> JSONResponse:
            session = authenticate(request, session_id_field(session_id))
            return success(request, emulator.check(session))

        @api.get("/all-sessions")
        async def all_sessions(request: Request) -> JSONResponse:
            return success(request, {"sessions": [emulator.summary(s) for s in emulator.sessions.values()]})

        @api.post("/restart-session")
        async def restart_session(request: Request) -> JSONResponse:
            body = await body_of(request)
            session = authenticate(request, session_id_field(body.get("sessionId")))
            wipe = bool_field(body, "wipe")
            emulator.restart(session, wipe=wipe)
            return success(
                request, {"sessionId": session.session_id, "status": session.status, "wiped": wipe}
            )

        @api.post("/delete-session")
        async def delete_session(request: Request) -> JSONResponse:
            body = await body_of(request)
            session = authenticate(request, session_id_field(body.get("sessionId")))
            emulator.delete(session)
            return success(request, {"sessionId": session.session_id, "deleted": True})

        @api.post("/rotate-key")
        async def rotate_key(request: Request) -> JSONResponse:
            body = await body_of(request)
            session = authenticate(request, session_id_field(body.get("sessionId")))
            return success(request, {"sessionId": session.session_id, "apiKey": emulator.rotate_key(session)})

        @api.post("/send")
        async def send(request: Request) -> JSONResponse:
            body = await body_of(request)
            session = authenticate(request, session_id_field(body.get("sessionId")))
            message = parse_message(session, body)
            emulator.refuse_if_unsendable(session, message.to)
            if bool_field(body, "dryRun"):
                return success(
                    request,
                    {
                        "queued": True,
                        "dryRun": True,
                        "to": f"{message.to}@s.whatsapp.net",
                        "payload": dry_run_payload(message),
                    },
                )
            return success(request, await emulator.accept(session, message))

        self._add_control_routes(api)
        return api

    async def _body_of(self, request: Request) -> dict[str, Any]:
        """Read a request's JSON body, refusing it if the emulator was reset since the request arrived."""
        body = await read_json_object(request, self.config.max_body_bytes)
        # What follows changes state without waiting again: checking here is enough.
        self.service.in_flight.ensure_current(request.state.generation)
        return body

    def _add_control_routes(self, api: FastAPI) -> None:
        emulator = self.service
        body_of = self._body_of

        def session_of(session_id: str) -> Session:
            return emulator.get(session_id_field(session_id))

        @api.post("/_emulator/sessions/{session_id}/link")
        async def link(request: Request, session_id: str) -> JSONResponse:
            session = session_of(session_id)
            await emulator.link(session)
            return success(request, emulator.check(session))

        @api.post("/_emulator/sessions/{session_id}/disconnect")
        async def disconnect(request: Request, session_id: str) -> JSONResponse:
            session = session_of(session_id)
            emulator.disconnect(session)
            return success(request, emulator.check(session))

        @api.post("/_emulator/sessions/{session_id}/disable")
        async def disable(request: Request, session_id: str) -> JSONResponse:
            session = session_of(session_id)
            emulator.disable(session)
            return success(request, emulator.check(session))

        @api.post("/_emulator/sessions/{session_id}/warning")
        async def warning(request: Request, session_id: str) -> JSONResponse:
            session = session_of(session_id)
            body = await body_of(request)
            emulator.set_warning(session, string_field(body, "warning", required=False) or None)
            return success(request, emulator.check(session))

        @api.post("/_emulator/unregistered")
        async def unregistered(request: Request) -> JSONResponse:
            body = await body_of(request)
            numbers = body.get("numbers")
            if not isinstance(numbers, list) or not all(
                isinstance(n, str) and PHONE_PATTERN.fullmatch(n) for n in numbers
            ):
                raise bad_request("'numbers' must be a list of phone numbers of 7 to 15 digits")
            emulator.mark_unregistered(numbers)
            return success(request, {"unregistered": sorted(emulator.unregistered)})

        @api.get("/_emulator/outbox")
        async def outbox(request: Request, sessionId: str | None = None) -> JSONResponse:
            messages = [m.to_outbox() for m in emulator.outbox if sessionId in (None, m.session_id)]
            return success(request, {"messages": messages})

        @api.get("/_emulator/faults")
        async def list_faults(request: Request) -> JSONResponse:
            return success(request, {"faults": [f.to_json() for f in self.faults.faults]})

        @api.post("/_emulator/faults")
        async def add_fault(request: Request) -> JSONResponse:
            body = await body_of(request)
            try:
                fault = Fault.from_json(body)
            except FaultSpecError as exc:
                raise bad_request(str(exc)) from None
            self.faults.add(fault)
            return success(request, fault.to_json())

        @api.delete("/_emulator/faults")
        async def clear_faults(request: Request) -> JSONResponse:
            self.faults.clear()
            return success(request, {"faults": []})

        @api.get("/_emulator/requests")
        async def requests(request: Request) -> JSONResponse:
            return success(request, {"requests": list(self.requests)})

        @api.get("/_emulator/config")
        async def show_config(request: Request) -> JSONResponse:
            values = {
                k: (str(v) if v is not None and k == "state_file" else v)
                for k, v in vars(self.config).items()
            }
            return success(request, values)

        @api.post("/_emulator/reset")
        async def reset(request: Request) -> JSONResponse:
            emulator.reset()
            self.faults.clear()
            self.requests.clear()
            return success(request, {"reset": True})
