"""
:class:`EmulatorProcess`: the ``whatsinfinity-emulator`` command line in a process of its own.

Use it where the in-process :func:`~.server.run_emulator` will not do: to kill the emulator and start
it again on the same ``--state-file``, or to keep it off the measured process's GIL and CPU.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from airflow_provider_whatsinfinity.emulator.control import EmulatorControl

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from typing_extensions import Self

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """
    Return a TCP port that is free on ``host`` right now.

    Another process may take it before ours binds it; :func:`~.server.run_emulator` avoids that race by
    binding the socket itself, which a separate process cannot.

    :param host: The interface.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def emulator_command() -> list[str]:
    """Return the command that starts the emulator: the console script beside this Python, else ``-m``."""
    script = Path(sys.executable).with_name("whatsinfinity-emulator")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "airflow_provider_whatsinfinity.emulator"]


class EmulatorProcess(EmulatorControl):
    """
    The emulator's command line in a subprocess, with a client for its control API.

    .. code-block:: python

        with EmulatorProcess("--state-file", "state.json", "--typing-delay", "0") as emulator:
            emulator.create_session("mysession", "your-session-api-key", link=True)
            ...  # point a connection at emulator.url
            emulator.stop(signal.SIGKILL)  # a crash: what was answered is in state.json

    :param options: More command-line options, such as ``"--auto-link", "1"``; they come after
        ``--host`` and ``--port``, so they may override them.
    :param host: Interface to listen on.
    :param port: Port to listen on; ``None`` picks one that is free now.
    :param log_path: File the emulator's output goes to; ``None`` leaves it on this process's.
    :param env: The emulator's environment; ``None`` inherits this process's.
    :param cwd: The emulator's working directory; ``None`` keeps this process's.
    :param start_timeout: Seconds :meth:`start` waits for the emulator to answer.
    """

    def __init__(
        self,
        *options: str,
        host: str = LOOPBACK,
        port: int | None = None,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.port = free_port(host) if port is None else port
        url_host = f"[{host}]" if ":" in host else host
        super().__init__(f"http://{url_host}:{self.port}")
        self.command = [*emulator_command(), "--host", host, "--port", str(self.port), *options]
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            self.close()

    @property
    def pid(self) -> int:
        """The emulator's process id."""
        assert self.process is not None, "the emulator was not started"
        return self.process.pid

    def start(self) -> None:
        """
        Start the emulator and wait until it answers.

        :raises RuntimeError: It exited, or did not answer within ``start_timeout``; it is stopped.
        """
        self.launch()
        try:
            self.wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the emulator's process without waiting for it to answer, and return it."""
        if self.log_path is None:
            self.process = subprocess.Popen(self.command, env=self.env, cwd=self.cwd)
        else:
            with self.log_path.open("wb") as log:
                self.process = subprocess.Popen(
                    self.command, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT
                )
        return self.process

    def wait_until_ready(self) -> None:
        """
        Wait until the launched emulator answers HTTP.

        :raises RuntimeError: It exited, or did not answer within ``start_timeout``.
        """
        assert self.process is not None, "launch() the emulator first"
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                self._http.get("/all-sessions", timeout=1)
                return
            except httpx.TransportError:
                pass
            see = f"; see {self.log_path}" if self.log_path is not None else ""
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"The emulator did not start on {self.url}: it exited with {self.process.returncode}{see}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"The emulator did not start on {self.url}: no answer in {self.start_timeout:g} s{see}"
                )
            time.sleep(0.05)

    def stop(self, signum: int = signal.SIGTERM, grace: float = 10.0) -> int | None:
        """
        Stop the emulator: send it ``signum``, and kill it if it is still there after ``grace`` seconds.

        :param signum: ``SIGTERM`` shuts it down cleanly (the state file is compacted); ``SIGKILL`` is
            a crash.
        :param grace: Seconds to wait for it to exit.
        :return: Its exit code (negative: the signal that ended it); ``None`` if it was never started.
        """
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=grace)
        return self.process.returncode

    def output(self) -> str:
        """Return what the emulator wrote to its log so far; empty without a ``log_path``."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")
