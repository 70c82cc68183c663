"""
A local emulator of the WhatsInfinity API, for tests and demos.

Run it from the command line (``whatsinfinity-emulator --port 8765``), in a test through the
``whatsinfinity_emulator`` pytest fixture, or anywhere with :func:`run_emulator`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_whatsinfinity.emulator.config import EmulatorConfig

if TYPE_CHECKING:
    from airflow_provider_whatsinfinity.emulator.server import RunningEmulator, run_emulator

__all__ = ["EmulatorConfig", "RunningEmulator", "run_emulator"]


def __getattr__(name: str) -> Any:
    # The server pulls in uvicorn and FastAPI: load it only when someone asks for it.
    if name in ("RunningEmulator", "run_emulator"):
        from airflow_provider_whatsinfinity.emulator import server

        return getattr(server, name)
    raise AttributeError(name)
