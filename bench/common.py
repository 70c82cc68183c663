"""
What the benchmarks share: machine info, the emulator process, workers, statistics, tables, results.

Every measurement runs in a process of its own: the emulator in one (pinned to the first CPU when the
machine has two or more), the measured code in another (pinned to the second CPU), so that they never
share a GIL or a core. The controller (``python -m bench``) only starts them, prints and writes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_whatsinfinity.emulator.process import EmulatorProcess

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
LOOPBACK = "127.0.0.1"

#: One phone number for single sends; the emulator accepts any 7 to 15 digits.
PHONE = "919999999999"
#: The x-api-key of every session the benchmarks create (16+ characters).
API_KEY = "bench-session-key-0123456789"


# Machine and versions ----------------------------------------------------------------------------


def cpu_model() -> str:
    """Return the CPU model named in ``/proc/cpuinfo`` (or what ``platform`` knows)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def machine_info() -> dict[str, Any]:
    """Return the machine, the versions measured and the date, for every results file."""
    dirty = _git("status", "--porcelain", "--", "airflow_provider_whatsinfinity")
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(_mem_total_bytes() / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "airflow": _version("apache-airflow"),
        "httpx": _version("httpx"),
        "provider": _version("airflow-provider-whatsinfinity"),
        "apache_airflow_providers_http": _version("apache-airflow-providers-http"),
        "apache_airflow_providers_slack": _version("apache-airflow-providers-slack"),
        "uvicorn": _version("uvicorn"),
        "git_commit": _git("rev-parse", "--short", "HEAD") or None,
        "provider_tree": "modified" if dirty else "clean",
        "date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
    }


def _mem_total_bytes() -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def machine_line(info: dict[str, Any]) -> str:
    """Return the one-line summary of :func:`machine_info` printed above each table."""
    return (
        f"{info['cpu_model']}, {info['cores']} cores, Python {info['python']}, Airflow {info['airflow']}, "
        f"httpx {info['httpx']}, {info['date']}"
    )


# CPUs and processes ------------------------------------------------------------------------------


def cpus() -> list[int]:
    """Return the CPUs this process may run on, lowest first."""
    return sorted(os.sched_getaffinity(0))


def emulator_cpu() -> int | None:
    """Return the CPU for the emulator (the first), or ``None`` on a single-CPU machine."""
    available = cpus()
    return available[0] if len(available) >= 2 else None


def worker_cpu() -> int | None:
    """Return the CPU for the measured process (the second), or ``None`` on a single-CPU machine."""
    available = cpus()
    return available[1] if len(available) >= 2 else None


def pin(pid: int, cpu: int | None) -> None:
    """
    Pin a process we just started to one CPU; threads it starts later inherit it.

    :param pid: The process.
    :param cpu: The CPU, or ``None`` to leave it alone.
    """
    if cpu is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {cpu})


def process_cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds a process has used, from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def process_rss_bytes(pid: int | str = "self") -> int:
    """Return a process's resident set size in bytes, from ``/proc/<pid>/statm``."""
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def own_cpu_seconds() -> float:
    """Return this process's user + system CPU seconds (all threads)."""
    times = os.times()
    return times.user + times.system


def stop_process(process: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """
    Stop a process this benchmark started: SIGTERM, then SIGKILL after ``grace`` seconds.

    :param process: The process.
    :param grace: Seconds to wait for it to exit after SIGTERM.
    """
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace)


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """
    Return the environment of a benchmark's subprocess: this one, a private Airflow home, ``extra``.

    :param extra: More variables, such as ``AIRFLOW_CONN_*`` connections.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AIRFLOW_CONN_") and key != "PYTHONPATH"
    }
    env["AIRFLOW_HOME"] = str(_airflow_home())
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # imports should use (and write) .pyc files, as in Airflow
    env.update(extra or {})
    return env


_AIRFLOW_HOME: Path | None = None


def _airflow_home() -> Path:
    global _AIRFLOW_HOME
    if _AIRFLOW_HOME is None:
        _AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="whatsinfinity-bench-airflow-"))
    return _AIRFLOW_HOME


def whatsinfinity_conn(url: str, session_id: str, api_key: str = API_KEY) -> str:
    """
    Return a WhatsInfinity connection in the JSON form of ``AIRFLOW_CONN_*`` variables.

    :param url: The emulator's base URL.
    :param session_id: The session (the connection's login).
    :param api_key: The session's key (the connection's password).
    """
    return json.dumps({"conn_type": "whatsinfinity", "host": url, "login": session_id, "password": api_key})


def run_worker(
    module: str,
    config: dict[str, Any],
    *,
    name: str,
    env: dict[str, str] | None = None,
    cpu: int | None = None,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """
    Run ``python -m <module> --worker CONFIG`` pinned to ``cpu`` and return the JSON it writes.

    Its output goes to ``bench/results/<name>.log.tmp`` (kept for a look; git ignores it).

    :param module: The benchmark module, such as ``bench.bulk_send``.
    :param config: Its settings, passed as JSON.
    :param name: The name of its log file.
    :param env: More environment variables.
    :param cpu: The CPU to pin it to.
    :param timeout: Seconds after which it is killed and the benchmark fails.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_path = RESULTS / f"{name}.log.tmp"
    with tempfile.TemporaryDirectory(prefix="whatsinfinity-bench-") as scratch:
        out = Path(scratch) / "result.json"
        command = [sys.executable, "-m", module, "--worker", json.dumps(config), "--out", str(out)]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, cwd=REPO, env=worker_env(env), stdout=log, stderr=subprocess.STDOUT
            )
            pin(process.pid, cpu)
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                stop_process(process, grace=5)
                raise RuntimeError(f"{module} worker ran over {timeout:.0f} s; see {log_path}") from None
        if code != 0 or not out.exists():
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{module} worker failed with exit code {code}; {log_path} ends:\n{tail}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def worker_main(run: Any) -> None:
    """
    Be a worker: parse ``--worker CONFIG --out PATH``, call ``run(config)``, write its JSON.

    :param run: A callable taking the config dict and returning a JSON-able dict.
    """
    args = sys.argv[1:]
    if len(args) != 4 or args[0] != "--worker" or args[2] != "--out":
        raise SystemExit(f"usage: python -m {sys.argv[0]} --worker CONFIG_JSON --out PATH")
    result = run(json.loads(args[1]))
    Path(args[3]).write_text(json.dumps(result))


# The emulator ------------------------------------------------------------------------------------


class BenchEmulator(EmulatorProcess):
    """
    The emulator as the benchmarks run it: a process of its own, pinned to the emulator's CPU.

    No typing pause or reconnect delay, warnings only, its output in ``bench/results/<name>.log.tmp``,
    and the benchmarks' :data:`API_KEY` for the sessions it creates.

    .. code-block:: python

        with BenchEmulator(rate_limit=100_000) as emulator:
            emulator.create_session("bench", link=True)

    :param rate_limit: ``--rate-limit``.
    :param rate_window: ``--rate-window`` in seconds.
    :param options: More command-line options, such as ``["--auto-link", "1"]``.
    :param name: Name of its log file under ``bench/results`` (``<name>.log.tmp``).
    """

    log_path: Path  # always set here

    def __init__(
        self,
        *,
        rate_limit: int = 1_000_000,
        rate_window: float = 60.0,
        options: Sequence[str] = (),
        name: str = "emulator",
    ) -> None:
        super().__init__(
            *("--rate-limit", str(rate_limit), "--rate-window", str(rate_window)),
            *("--typing-delay", "0", "--connect-delay", "0", "--log-level", "warning"),
            *options,
            host=LOOPBACK,
            log_path=RESULTS / f"{name}.log.tmp",
            env=worker_env(),
            cwd=REPO,
        )
        self.cpu = emulator_cpu()

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the emulator, and pin it before it starts any thread of its own."""
        RESULTS.mkdir(parents=True, exist_ok=True)
        process = super().launch()
        pin(process.pid, self.cpu)
        return process

    def create_session(
        self, session_id: str = "mysession", api_key: str = API_KEY, *, link: bool = False
    ) -> dict[str, Any]:
        """Create a session with the benchmarks' key; see :meth:`EmulatorControl.create_session`."""
        return super().create_session(session_id, api_key, link=link)


# Statistics --------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    """Return the median of ``values`` (NaN when empty)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: Sequence[float], share: float) -> float:
    """
    Return a percentile by linear interpolation between the closest ranks (NaN when empty).

    :param values: The samples.
    :param share: The percentile as a share, such as ``0.99``.
    """
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = share * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rounded(value: float, digits: int = 3) -> float | None:
    """Return ``value`` rounded for JSON, ``None`` for NaN."""
    return None if math.isnan(value) else round(value, digits)


# Targets, tables and results ---------------------------------------------------------------------


@dataclass
class Target:
    """
    One target a benchmark checks, and whether it was met.

    :param what: What is measured, such as ``import of the operators``.
    :param target: The target as text, such as ``<= 10 ms``.
    :param value: The figure measured, as text.
    :param passed: Whether the target is met.
    """

    what: str
    target: str
    value: str
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        """Return it for the results JSON."""
        return {"what": self.what, "target": self.target, "value": self.value, "passed": self.passed}

    @property
    def verdict(self) -> str:
        """``PASS`` or ``FAIL``."""
        return "PASS" if self.passed else "FAIL"


@dataclass
class Table:
    """
    A plain-text table: a header row and rows of cells, right-aligned but for the first column.

    :param title: Printed above it.
    :param columns: The header row.
    """

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        """Add a row. :param cells: Its cells, turned into text."""
        self.rows.append([str(cell) for cell in cells])

    def render(self) -> str:
        """Return the table as text."""
        widths = [len(column) for column in self.columns]
        for row in self.rows:
            for index, cell in enumerate(row):
                widths[index] = max(widths[index], len(cell))

        def line(cells: list[str]) -> str:
            parts = [
                cell.ljust(widths[index]) if index == 0 else cell.rjust(widths[index])
                for index, cell in enumerate(cells)
            ]
            return "  ".join(parts).rstrip()

        rule = "  ".join("-" * width for width in widths)
        text = [self.title, line(self.columns), rule, *(line(row) for row in self.rows)]
        text += [f"  {note}" for note in self.notes]
        return "\n".join(text)


@dataclass
class Outcome:
    """
    What one benchmark produced: tables to print, targets, and figures for its results file.

    :param name: The benchmark's name; its results go to ``bench/results/<name>.json``.
    :param title: One line on what it measures.
    """

    name: str
    title: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def write(self, machine: dict[str, Any], suffix: str = ".json") -> Path:
        """
        Write ``bench/results/<name>.json`` and return its path.

        :param machine: From :func:`machine_info`.
        :param suffix: The file name's ending.
        """
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}{suffix}"
        document = {
            "benchmark": self.name,
            "title": self.title,
            "machine": machine,
            "settings": self.settings,
            "targets": [target.to_dict() for target in self.targets],
            "figures": self.figures,
            "run_seconds": round(self.seconds, 1),
        }
        path.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
        return path

    def render(self) -> str:
        """Return the tables and the targets as text."""
        parts = [table.render() for table in self.tables]
        if self.targets:
            verdicts = Table("Targets", ["what", "measured", "target", "verdict"])
            for target in self.targets:
                verdicts.add(target.what, target.value, target.target, target.verdict)
            parts.append(verdicts.render())
        return "\n\n".join(parts)


@contextlib.contextmanager
def timed(outcome: Outcome) -> Iterator[None]:
    """Record in ``outcome.seconds`` how long the ``with`` block took. :param outcome: The outcome."""
    started = time.monotonic()
    try:
        yield
    finally:
        outcome.seconds = time.monotonic() - started


def ms(seconds: float, digits: int = 1) -> str:
    """
    Return seconds as milliseconds text, such as ``4.2``.

    :param seconds: Seconds.
    :param digits: Decimals.
    """
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.{digits}f}"
