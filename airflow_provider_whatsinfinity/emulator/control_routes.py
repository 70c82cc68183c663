"""
The emulator's own ``/_emulator`` control API: what a test does to the emulated phones and service.

Not part of WhatsInfinity: it takes no key, and injected faults never touch it.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at runtime.

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from airflow_provider_whatsinfinity.emulator.answers import success
from airflow_provider_whatsinfinity.emulator.bodies import string_field
from airflow_provider_whatsinfinity.emulator.dependencies import (
    Faults,
    JsonBody,
    KnownSession,
    SeenRequests,
    Service,
)
from airflow_provider_whatsinfinity.emulator.faults import Fault, FaultSpecError
from airflow_provider_whatsinfinity.emulator.model import bad_request
from airflow_provider_whatsinfinity.spec import PHONE_PATTERN

control_router = APIRouter(prefix="/_emulator")


@control_router.post("/sessions/{session_id}/link")
async def link(request: Request, service: Service, session: KnownSession) -> JSONResponse:
    """Link the session as if its QR had been scanned; its queue is delivered before the answer."""
    await service.link(session)
    return success(request, service.check(session))


@control_router.post("/sessions/{session_id}/disconnect")
async def disconnect(request: Request, service: Service, session: KnownSession) -> JSONResponse:
    """Drop the session's connection: sends queue until it is linked again."""
    service.disconnect(session)
    return success(request, service.check(session))


@control_router.post("/sessions/{session_id}/disable")
async def disable(request: Request, service: Service, session: KnownSession) -> JSONResponse:
    """Disable the session: sends get 409 until it is restarted."""
    service.disable(session)
    return success(request, service.check(session))


@control_router.post("/sessions/{session_id}/warning")
async def warning(request: Request, service: Service, session: KnownSession, body: JsonBody) -> JSONResponse:
    """Set, or clear with ``null``, the warning check-session shows."""
    service.set_warning(session, string_field(body, "warning", required=False) or None)
    return success(request, service.check(session))


@control_router.post("/unregistered")
async def unregistered(request: Request, service: Service, body: JsonBody) -> JSONResponse:
    """Make sends to these numbers fail with 422, as for numbers not on WhatsApp."""
    numbers = body.get("numbers")
    if not isinstance(numbers, list) or not all(
        isinstance(n, str) and PHONE_PATTERN.fullmatch(n) for n in numbers
    ):
        raise bad_request("'numbers' must be a list of phone numbers of 7 to 15 digits")
    service.mark_unregistered(numbers)
    return success(request, {"unregistered": sorted(service.unregistered)})


@control_router.get("/outbox")
async def outbox(request: Request, service: Service, sessionId: str | None = None) -> JSONResponse:
    """List what the emulated phones received, in delivery order; of one session if asked."""
    messages = [m.to_outbox() for m in service.outbox if sessionId in (None, m.session_id)]
    return success(request, {"messages": messages})


@control_router.get("/faults")
async def list_faults(request: Request, faults: Faults) -> JSONResponse:
    """List the injected faults with how often each matched and fired."""
    return success(request, {"faults": [f.to_json() for f in faults.faults]})


@control_router.post("/faults")
async def add_fault(request: Request, faults: Faults, body: JsonBody) -> JSONResponse:
    """Inject a fault into the documented API; see :class:`~.faults.Fault`."""
    try:
        fault = Fault.from_json(body)
    except FaultSpecError as exc:
        raise bad_request(str(exc)) from None
    faults.add(fault)
    return success(request, fault.to_json())


@control_router.delete("/faults")
async def clear_faults(request: Request, faults: Faults) -> JSONResponse:
    """Stop injecting faults."""
    faults.clear()
    return success(request, {"faults": []})


@control_router.get("/requests")
async def requests(request: Request, seen: SeenRequests) -> JSONResponse:
    """List the API requests seen (the control API's excluded), oldest first."""
    return success(request, {"requests": list(seen)})


@control_router.get("/config")
async def show_config(request: Request, service: Service) -> JSONResponse:
    """Show the settings the emulator runs with."""
    values = {
        k: (str(v) if v is not None and k == "state_file" else v) for k, v in vars(service.config).items()
    }
    return success(request, values)


@control_router.post("/reset")
async def reset(request: Request, service: Service, faults: Faults, seen: SeenRequests) -> JSONResponse:
    """Forget every session, message, fault and request, and cut off requests still in flight."""
    service.reset()
    faults.clear()
    seen.clear()
    return success(request, {"reset": True})
