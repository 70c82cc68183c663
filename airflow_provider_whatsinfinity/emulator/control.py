"""
:class:`EmulatorControl`: the one client of an emulator's ``/_emulator`` control API.

The pytest fixture's emulator (:class:`~.server.RunningEmulator`, in a thread of the test process), an
emulator in a process of its own (:class:`~.process.EmulatorProcess`), the benchmarks and the scripts
all drive the emulator through it. It speaks plain HTTP and never imports the provider's client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self


class EmulatorControl:
    """
    A client for an emulator's control API, and for creating sessions through its public API.

    .. code-block:: python

        with EmulatorControl("http://127.0.0.1:8765") as emulator:
            emulator.create_session("mysession", "your-session-api-key", link=True)
            print(emulator.outbox("mysession"))

    :param url: Base URL of the emulated service, such as ``http://127.0.0.1:8765``.
    :param timeout: Seconds allowed for each call.
    """

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url
        self._http = httpx.Client(base_url=url, timeout=timeout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the control client; the emulator keeps running."""
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        body = response.json()
        if not body.get("success"):
            raise RuntimeError(f"{method} {path} failed with HTTP {response.status_code}: {body}")
        return body["data"]

    def create_session(
        self,
        session_id: str = "mysession",
        api_key: str = "your-session-api-key",
        *,
        link: bool = False,
    ) -> dict[str, Any]:
        """
        Create a session through the public API, and link it if asked.

        :param session_id: The session's ID.
        :param api_key: The session's API key.
        :param link: Link it at once, as if its QR had been scanned.
        :return: The ``data`` of the create-session answer, or of the link when ``link`` is set.
        """
        data: dict[str, Any] = self._call(
            "POST", "/create-session", json={"sessionId": session_id, "apiKey": api_key}
        )
        if link:
            data = self.link(session_id)
        return data

    def link(self, session_id: str = "mysession") -> dict[str, Any]:
        """Link a session as if its QR had been scanned; its queue is delivered before this returns."""
        data: dict[str, Any] = self._call("POST", f"/_emulator/sessions/{session_id}/link")
        return data

    def disconnect(self, session_id: str = "mysession") -> dict[str, Any]:
        """Drop a session's connection: sends queue until it is linked again."""
        data: dict[str, Any] = self._call("POST", f"/_emulator/sessions/{session_id}/disconnect")
        return data

    def disable(self, session_id: str = "mysession") -> dict[str, Any]:
        """Disable a session: sends get 409 until it is restarted."""
        data: dict[str, Any] = self._call("POST", f"/_emulator/sessions/{session_id}/disable")
        return data

    def set_warning(self, session_id: str = "mysession", warning: str | None = None) -> dict[str, Any]:
        """Set or clear the warning check-session shows. :param session_id: Session. :param warning: Text."""
        data: dict[str, Any] = self._call(
            "POST", f"/_emulator/sessions/{session_id}/warning", json={"warning": warning}
        )
        return data

    def mark_unregistered(self, *numbers: str) -> list[str]:
        """Make sends to these numbers fail with 422, as for numbers not on WhatsApp."""
        data = self._call("POST", "/_emulator/unregistered", json={"numbers": list(numbers)})
        return list(data["unregistered"])

    def outbox(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """
        Return the delivered messages in delivery order.

        :param session_id: Only this session's messages.
        """
        params = {"sessionId": session_id} if session_id else None
        return list(self._call("GET", "/_emulator/outbox", params=params)["messages"])

    def add_fault(self, path: str, mode: str, **options: Any) -> dict[str, Any]:
        """
        Inject a fault; see :class:`~airflow_provider_whatsinfinity.emulator.faults.Fault`.

        :param path: Request path, such as ``/send``.
        :param mode: ``status``, ``drop``, ``delay`` or ``after``.
        :param options: ``status``, ``seconds``, ``then``, ``times``, ``rate``, ``method``,
            ``retryAfter``, ``seed`` or ``bodyContains``.
        """
        data: dict[str, Any] = self._call(
            "POST", "/_emulator/faults", json={"path": path, "mode": mode, **options}
        )
        return data

    def faults(self) -> list[dict[str, Any]]:
        """Return the active faults with how often each matched and fired."""
        return list(self._call("GET", "/_emulator/faults")["faults"])

    def clear_faults(self) -> None:
        """Stop injecting faults."""
        self._call("DELETE", "/_emulator/faults")

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """
        Return the API requests seen (control requests excluded; the last 10,000), oldest first.

        :param path: Only requests to this path.
        """
        seen = self._call("GET", "/_emulator/requests")["requests"]
        return [r for r in seen if path is None or r["path"] == path]

    def reset(self) -> None:
        """Forget every session, message, fault and request; requests still in flight change nothing."""
        self._call("POST", "/_emulator/reset")
