"""
A local emulator of the WhatsInfinity API, for tests and demos.

Run it from the command line (``whatsinfinity-emulator --port 8765``), in a test through the
``whatsinfinity_emulator`` pytest fixture, anywhere with :func:`run_emulator` (a thread of this
process) or :class:`EmulatorProcess` (a process of its own). :class:`EmulatorControl` drives any
running emulator through its ``/_emulator`` control API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_whatsinfinity.emulator.config import EmulatorConfig

if TYPE_CHECKING:
    from airflow_provider_whatsinfinity.emulator.control import EmulatorControl
    from airflow_provider_whatsinfinity.emulator.process import EmulatorProcess
    from airflow_provider_whatsinfinity.emulator.server import RunningEmulator, run_emulator

__all__ = ["EmulatorConfig", "EmulatorControl", "EmulatorProcess", "RunningEmulator", "run_emulator"]

# Loaded only when someone asks: the server pulls in uvicorn and FastAPI, the clients httpx.
_LAZY = {
    "EmulatorControl": "control",
    "EmulatorProcess": "process",
    "RunningEmulator": "server",
    "run_emulator": "server",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f"airflow_provider_whatsinfinity.emulator.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(name)
