"""
The emulator's HTTP face: the documented WhatsInfinity endpoints and the ``/_emulator`` control API.

Request bodies are read and checked by hand rather than through pydantic models, so that every bad
input gets the documented error shape with a message that names the field and what is wrong with it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import deque
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from airflow_provider_whatsinfinity.emulator.faults import Fault, FaultInjector, FaultSpecError, error_title
from airflow_provider_whatsinfinity.emulator.state import (
    ApiError,
    Emulator,
    Message,
    Session,
    bad_request,
    shown,
)
from airflow_provider_whatsinfinity.spec import (
    DEFAULT_MIMETYPES,
    MAX_API_KEY_LENGTH,
    MAX_FILE_NAME_LENGTH,
    MAX_MESSAGE_LENGTH,
    MEDIA_KINDS,
    MIN_API_KEY_LENGTH,
    PHONE_PATTERN,
    SEND_TYPES,
    SESSION_ID_PATTERN,
    detect_media,
    valid_http_url,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.types import Message as AsgiMessage
    from starlette.types import Receive, Scope, Send

    from airflow_provider_whatsinfinity.emulator.config import EmulatorConfig

log = logging.getLogger("whatsinfinity.emulator")

REQUEST_LOG_SIZE = 10_000
JSON_TYPE_NAMES = {
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
}


def _type_name(value: object) -> str:
    return "null" if value is None else JSON_TYPE_NAMES.get(type(value), type(value).__name__)


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


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """
    Read a request body that must be a JSON object of at most ``limit`` bytes.

    :param request: The request.
    :param limit: Largest body accepted.
    """
    too_large = ApiError(413, "Payload Too Large", f"Request body is larger than {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(
            499, "Client Closed Request", "The client went away before sending its whole body"
        ) from None
    raw = b"".join(chunks)
    if not raw.strip():
        raise bad_request("Request body is empty: send a JSON object with the required fields")
    try:
        # Strict JSON as a JavaScript service parses it: UTF-8 only, and no NaN or Infinity.
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise bad_request("Request body is not UTF-8 encoded JSON") from None
    except json.JSONDecodeError as exc:
        raise bad_request(f"Malformed JSON body: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:
        raise bad_request(f"Malformed JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request(f"Request body must be a JSON object, got {_type_name(body)}")
    return body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def string_field(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    """
    Return a string member of a request body.

    :param body: The request body.
    :param name: The member's name.
    :param required: Whether a missing or null member is an error.
    """
    value = body.get(name)
    if value is None:
        if required:
            raise bad_request(f"Missing required field: {name}")
        return None
    if not isinstance(value, str):
        raise bad_request(f"Field '{name}' must be a string, got {_type_name(value)}")
    return value


def bool_field(body: dict[str, Any], name: str) -> bool:
    """Return an optional boolean member, ``False`` when absent. :param body: Body. :param name: Member."""
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"Field '{name}' must be a boolean (true or false), got {_type_name(value)}")
    return value


def session_id_field(value: Any) -> str:
    """Check a session ID from a body or path. :param value: The session ID as sent."""
    if value is None:
        raise bad_request("Missing required field: sessionId")
    if not isinstance(value, str):
        raise bad_request(f"Field 'sessionId' must be a string, got {_type_name(value)}")
    if not SESSION_ID_PATTERN.fullmatch(value):
        raise ApiError(
            400,
            "Invalid sessionId",
            f"sessionId {shown(value)} must be 1 to 64 letters, digits, '-' or '_'",
        )
    return value


def phone_field(body: dict[str, Any], name: str) -> str:
    """Check a phone number member: 7 to 15 digits. :param body: Body. :param name: Member."""
    value = string_field(body, name)
    assert value is not None
    if not PHONE_PATTERN.fullmatch(value):
        raise bad_request(
            f"Invalid phone number: '{name}' must be 7 to 15 digits with the country code and no '+' "
            f"(got {shown(value)})"
        )
    return value


class EmulatorApp:
    """
    The emulated service as one ASGI application.

    Layers, outermost first: request IDs and the request log, injected faults, the FastAPI routes.

    :param config: How the service behaves.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.emulator = Emulator(config)
        self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.api = self._build_api()
        self.faults = FaultInjector(self.api)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Give the request an ID, log it, and pass it on through the fault layer."""
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
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
        emulator = self.emulator
        config = self.config

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

        async def body_of(request: Request) -> dict[str, Any]:
            return await read_json_object(request, config.max_body_bytes)

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

    def _add_control_routes(self, api: FastAPI) -> None:
        emulator = self.emulator

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
            body = await read_json_object(request, self.config.max_body_bytes)
            session.warning = string_field(body, "warning", required=False) or None
            emulator.save()
            return success(request, emulator.check(session))

        @api.post("/_emulator/unregistered")
        async def unregistered(request: Request) -> JSONResponse:
            body = await read_json_object(request, self.config.max_body_bytes)
            numbers = body.get("numbers")
            if not isinstance(numbers, list) or not all(
                isinstance(n, str) and PHONE_PATTERN.fullmatch(n) for n in numbers
            ):
                raise bad_request("'numbers' must be a list of phone numbers of 7 to 15 digits")
            emulator.unregistered.update(numbers)
            emulator.save()
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
            body = await read_json_object(request, self.config.max_body_bytes)
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
            for session in emulator.sessions.values():
                session.cancel_timer()
            emulator.sessions.clear()
            emulator.outbox.clear()
            emulator.unregistered.clear()
            emulator.save()
            self.faults.clear()
            self.requests.clear()
            return success(request, {"reset": True})


def parse_message(session: Session, body: dict[str, Any]) -> Message:
    """
    Check a ``/send`` body and turn it into a message.

    :param session: The sending session.
    :param body: The request body.
    """
    to = phone_field(body, "to")
    send_type = string_field(body, "type")
    if send_type not in SEND_TYPES:
        raise bad_request(f"Invalid type {shown(send_type)}: use one of {', '.join(SEND_TYPES)}")
    typing = bool_field(body, "typing")
    bool_field(body, "dryRun")
    if send_type == "text":
        text = string_field(body, "message")
        assert text is not None
        if not text.strip():
            raise bad_request("Field 'message' must not be empty")
        if len(text) > MAX_MESSAGE_LENGTH:
            raise bad_request(
                f"Message too long: {len(text)} characters; "
                f"text messages must be at most {MAX_MESSAGE_LENGTH}"
            )
        return Message(
            message_id=_message_id(),
            session_id=session.session_id,
            to=to,
            type="text",
            message=text,
            typing=typing,
        )
    url = string_field(body, "url")
    assert url is not None
    if not valid_http_url(url):
        raise bad_request(f"Invalid URL format: {shown(url, 80)}; use a publicly accessible http(s) URL")
    caption = string_field(body, "caption", required=False)
    file_name = string_field(body, "fileName", required=False)
    if file_name is not None and not 1 <= len(file_name) <= MAX_FILE_NAME_LENGTH:
        raise bad_request(f"Field 'fileName' must be 1 to {MAX_FILE_NAME_LENGTH} characters")
    detected = detect_media(url)
    if send_type == "media":
        if detected is None:
            raise bad_request(
                f"Cannot detect the media type of {shown(url, 80)} from its extension; "
                f"set type to one of {', '.join(MEDIA_KINDS)}"
            )
        kind, mimetype = detected
    else:
        kind = send_type
        mimetype = detected[1] if detected and detected[0] == kind else DEFAULT_MIMETYPES[kind]
    if kind == "document" and file_name is None:
        file_name = url.rsplit("/", 1)[-1].split("?", 1)[0] or "document"
    return Message(
        message_id=_message_id(),
        session_id=session.session_id,
        to=to,
        type=kind,
        url=url,
        caption=caption if kind != "audio" else None,
        file_name=file_name if kind == "document" else None,
        mimetype=mimetype,
        typing=typing,
    )


def dry_run_payload(message: Message) -> dict[str, Any]:
    """Return the message as the service would hand it to WhatsApp. :param message: The message."""
    if message.type == "text":
        return {"text": message.message}
    payload: dict[str, Any] = {message.type: {"url": message.url}, "mimetype": message.mimetype}
    if message.file_name is not None:
        payload["fileName"] = message.file_name
    if message.caption is not None:
        payload["caption"] = message.caption
    return payload


def _message_id() -> str:
    # Shaped like the IDs WhatsApp Web gives outgoing messages.
    return "3EB0" + uuid.uuid4().hex[:18].upper()
