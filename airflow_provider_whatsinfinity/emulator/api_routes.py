"""
The documented WhatsInfinity API, route by route.

Bodies are read and checked in :mod:`.bodies`, the ``x-api-key`` check is a dependency
(:mod:`.dependencies`), and the rules live in :mod:`.service`: a route only ties them together.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at runtime.

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from airflow_provider_whatsinfinity.emulator.answers import success
from airflow_provider_whatsinfinity.emulator.bodies import (
    bool_field,
    dry_run_payload,
    parse_message,
    phone_field,
    session_id_field,
    string_field,
)
from airflow_provider_whatsinfinity.emulator.dependencies import (
    JsonBody,
    Service,
    SessionInBody,
    SessionInPath,
)
from airflow_provider_whatsinfinity.emulator.model import bad_request
from airflow_provider_whatsinfinity.spec import MAX_API_KEY_LENGTH, MIN_API_KEY_LENGTH

api_router = APIRouter()


@api_router.post("/create-session")
async def create_session(request: Request, service: Service, body: JsonBody) -> JSONResponse:
    """Create a session that shows a QR code to scan; no key yet, the body brings it."""
    session_id = session_id_field(body.get("sessionId"))
    api_key = string_field(body, "apiKey")
    assert api_key is not None
    if not MIN_API_KEY_LENGTH <= len(api_key) <= MAX_API_KEY_LENGTH or not api_key.isprintable():
        raise bad_request(
            f"apiKey must be {MIN_API_KEY_LENGTH} to {MAX_API_KEY_LENGTH} printable characters "
            f"(got {len(api_key)})"
        )
    session = service.create_session(session_id, api_key)
    return success(
        request, {"sessionId": session.session_id, "status": session.status, "hasQR": session.has_qr}
    )


@api_router.get("/qr/{session_id}")
async def qr(service: Service, session: SessionInPath) -> Response:
    """Return the session's QR code as a PNG, with the seconds until it expires in a header."""
    png = service.qr_png(session)
    headers = {"Cache-Control": "no-store", "X-QR-Expires-In": str(service.qr_expires_in(session))}
    return Response(png, media_type="image/png", headers=headers)


@api_router.post("/pairing-code")
async def pairing_code(
    request: Request, service: Service, body: JsonBody, session: SessionInBody
) -> JSONResponse:
    """Start linking the session by a code typed on the phone instead of a QR."""
    code = service.request_pairing_code(session, phone_field(body, "phoneNumber"))
    return success(request, {"sessionId": session.session_id, "pairingCode": code, "status": session.status})


@api_router.get("/check-session/{session_id}")
async def check_session(request: Request, service: Service, session: SessionInPath) -> JSONResponse:
    """Return the session's status, queue size and what is left of its rate window."""
    return success(request, service.check(session))


@api_router.get("/all-sessions")
async def all_sessions(request: Request, service: Service) -> JSONResponse:
    """List every session, never with its key; no key needed."""
    return success(request, {"sessions": [service.summary(s) for s in service.sessions.values()]})


@api_router.post("/restart-session")
async def restart_session(
    request: Request, service: Service, body: JsonBody, session: SessionInBody
) -> JSONResponse:
    """Restart the session; with ``wipe`` it forgets its link and shows a new QR."""
    wipe = bool_field(body, "wipe")
    service.restart(session, wipe=wipe)
    return success(request, {"sessionId": session.session_id, "status": session.status, "wiped": wipe})


@api_router.post("/delete-session")
async def delete_session(request: Request, service: Service, session: SessionInBody) -> JSONResponse:
    """Delete the session and whatever it still had queued."""
    service.delete(session)
    return success(request, {"sessionId": session.session_id, "deleted": True})


@api_router.post("/rotate-key")
async def rotate_key(request: Request, service: Service, session: SessionInBody) -> JSONResponse:
    """Give the session a new key; the old one stops working at once."""
    return success(request, {"sessionId": session.session_id, "apiKey": service.rotate_key(session)})


@api_router.post("/send")
async def send(request: Request, service: Service, body: JsonBody, session: SessionInBody) -> JSONResponse:
    """Send a text or media message: delivered now, queued until the session is active, or a dry run."""
    message = parse_message(session, body)
    service.refuse_if_unsendable(session, message.to)
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
    return success(request, await service.accept(session, message))
