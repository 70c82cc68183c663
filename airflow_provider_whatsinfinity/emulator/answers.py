"""
Every answer in the documented shape, the errors included.

``{success, requestId, data}``, or ``{success: false, requestId, error, details}`` for an error,
whether a rule raised it, the router found no route for the request, or a bug did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_whatsinfinity.emulator.faults import error_title
from airflow_provider_whatsinfinity.emulator.model import ApiError

if TYPE_CHECKING:
    from fastapi import FastAPI, Request


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


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return failure(request.state.request_id, exc)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # The router's own errors: no such path, or not with this method.
    if exc.status_code == 404:
        details = f"No endpoint {request.method} {request.url.path}; see the API reference"
    elif exc.status_code == 405:
        details = f"Method {request.method} is not allowed on {request.url.path}"
    else:
        details = str(exc.detail)
    error = ApiError(exc.status_code, error_title(exc.status_code), details, headers=exc.headers)
    return failure(request.state.request_id, error)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    error = ApiError(500, "Internal server error", "Unexpected error; report this requestId")
    return failure(request.state.request_id, error)


def answer_errors_in_shape(api: FastAPI) -> None:
    """
    Make ``api`` answer every error in the documented shape.

    :param api: The FastAPI application.
    """
    api.exception_handler(ApiError)(_api_error)
    api.exception_handler(StarletteHTTPException)(_http_error)
    api.exception_handler(Exception)(_unexpected)
