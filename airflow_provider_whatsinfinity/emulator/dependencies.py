"""
What the routes are given: the service and its parts, the JSON body, the session the key authenticates.

Every dependency is ``async``: FastAPI runs plain functions on a thread pool, and the emulated service
must only be touched from the event loop. The emulator's ASGI application (:class:`~.app.EmulatorApp`)
puts the service, the fault injector and the request log on the FastAPI application's ``state``.
"""

# No ``from __future__ import annotations`` in the dependency and route modules: FastAPI reads their
# annotations at runtime, so the names in them must be imported at runtime too.

from collections import deque
from typing import Annotated, Any

from fastapi import Depends, Request

from airflow_provider_whatsinfinity.emulator.bodies import read_json_object, session_id_field
from airflow_provider_whatsinfinity.emulator.faults import FaultInjector
from airflow_provider_whatsinfinity.emulator.model import ApiError, Session
from airflow_provider_whatsinfinity.emulator.service import EmulatedService

#: The API requests seen (the control API's excluded), oldest first, as ``/_emulator/requests`` lists them.
RequestLog = deque[dict[str, Any]]


def _service(request: Request) -> EmulatedService:
    service: EmulatedService = request.app.state.service
    return service


async def the_service(request: Request) -> EmulatedService:
    """The emulated service answering this request. :param request: The request."""
    return _service(request)


async def the_faults(request: Request) -> FaultInjector:
    """The faults injected into the documented API. :param request: The request."""
    faults: FaultInjector = request.app.state.faults
    return faults


async def the_request_log(request: Request) -> RequestLog:
    """The log of API requests seen. :param request: The request."""
    log: RequestLog = request.app.state.request_log
    return log


Service = Annotated[EmulatedService, Depends(the_service)]
Faults = Annotated[FaultInjector, Depends(the_faults)]
SeenRequests = Annotated[RequestLog, Depends(the_request_log)]


# The dependencies below read the service themselves instead of depending on the_service: FastAPI
# solves a dependency's own dependencies again wherever it is used, cached or not, and each level
# costs every request some microseconds, which the emulator_load benchmark sees.


async def json_body(request: Request) -> dict[str, Any]:
    """
    Read the request's JSON object, refusing the request if the emulator was reset since it arrived.

    :param request: The request.
    """
    service = _service(request)
    body = await read_json_object(request, service.config.max_body_bytes)
    # What follows changes state without waiting again: checking here is enough.
    service.in_flight.ensure_current(request.state.generation)
    return body


JsonBody = Annotated[dict[str, Any], Depends(json_body)]


def _authenticate(request: Request, session_id: str) -> Session:
    # A missing key is 401 before an unknown session is 404: without a key, nothing is revealed.
    key = request.headers.get("x-api-key")
    if not key:
        raise ApiError(401, "Unauthorized", "Invalid or missing API key")
    session = _service(request).get(session_id)
    if not session.key_matches(key):
        raise ApiError(401, "Unauthorized", "Invalid or missing API key")
    return session


async def session_in_path(request: Request, session_id: str) -> Session:
    """
    The session named in the path, authenticated by the ``x-api-key`` header.

    :param request: The request.
    :param session_id: The path's ``{session_id}``.
    :raises ApiError: 400 for a malformed ID, 401 for a missing or wrong key, 404 for no such session.
    """
    return _authenticate(request, session_id_field(session_id))


async def session_in_body(request: Request, body: JsonBody) -> Session:
    """
    The session named by the body's ``sessionId``, authenticated by the ``x-api-key`` header.

    :param request: The request.
    :param body: The request's JSON body.
    :raises ApiError: 400 for a missing or malformed ID, 401 for a missing or wrong key, 404 for no
        such session.
    """
    return _authenticate(request, session_id_field(body.get("sessionId")))


async def known_session(request: Request, session_id: str) -> Session:
    """
    The session named in the path, without a key: the control API's.

    :param request: The request.
    :param session_id: The path's ``{session_id}``.
    """
    return _service(request).get(session_id_field(session_id))


#: The session a request to the documented API names in its path, authenticated.
SessionInPath = Annotated[Session, Depends(session_in_path)]
#: The session a request to the documented API names in its body, authenticated.
SessionInBody = Annotated[Session, Depends(session_in_body)]
#: The session a control request names in its path; the control API takes no key.
KnownSession = Annotated[Session, Depends(known_session)]
