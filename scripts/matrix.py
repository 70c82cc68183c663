"""
The Airflow version matrix: the whole test suite on every Airflow 3 release line the provider claims.

    python scripts/matrix.py test [LINE ...]         # make test-matrix
    python scripts/matrix.py constraints [LINE ...]  # make constraints

``test`` runs pytest once per line, one line after the other (CI has two cores), each in a venv of its
own built from ``constraints/airflow-<line>.txt``: ``.venv-<line>``, rebuilt when the constraints or
``pyproject.toml`` change. The newest line runs in the project's ``.venv`` (``make venv``), which also
holds the benchmark and packaging extras. It prints a summary and fails when any line fails.

``constraints`` resolves each line's dependencies afresh in a throw-away venv and writes its ``pip
freeze``. An older Airflow installed today pulls today's FastAPI, cadwyn and svcs, which break it, so
older lines resolve with ``--uploaded-prior-to`` the day after their release; that needs an index that
publishes upload times (PyPI does; ``MATRIX_INDEX_URL`` picks another).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Release:
    """
    The release of one Airflow line that the matrix tests.

    :param airflow: Its newest patch release.
    :param cutoff: Resolve its dependencies as they were on this day (the day after its release);
        ``None`` for the newest line, which takes today's.
    :param extras: The provider's extras installed with it.
    """

    airflow: str
    cutoff: str | None
    extras: str = "dev"


RELEASES = {
    "3.0": Release("3.0.6", "2025-08-30"),
    "3.1": Release("3.1.8", "2026-03-12"),
    "3.2": Release("3.2.2", "2026-05-30"),
    "3.3": Release("3.3.2", None, extras="dev,bench,release,celery"),
}
NEWEST = max(RELEASES, key=lambda line: tuple(map(int, line.split("."))))


def constraints_file(line: str) -> Path:
    """Return the committed constraints file of a line."""
    return ROOT / "constraints" / f"airflow-{line}.txt"


def venv_of(line: str) -> Path:
    """Return the venv a line's tests run in."""
    return ROOT / (".venv" if line == NEWEST else f".venv-{line}")


def run(command: list[str], **kwargs: object) -> None:
    """Run a command, echoing it, and stop the script when it fails."""
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, **kwargs)  # type: ignore[call-overload]


def new_venv(venv: Path) -> Path:
    """Create a venv with the newest pip; return its python."""
    run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    return python


def ensure_venv(line: str) -> Path:
    """Build a line's venv from its constraints file unless it is already built from the same files."""
    venv = venv_of(line)
    if line == NEWEST:
        run(["make", "--no-print-directory", "venv"], cwd=ROOT)
        return venv
    stamp = venv / ".installed"
    digest = hashlib.sha256(
        constraints_file(line).read_bytes() + (ROOT / "pyproject.toml").read_bytes()
    ).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    python = new_venv(venv)
    extras = RELEASES[line].extras
    run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "-c",
            str(constraints_file(line)),
            "-e",
            f".[{extras}]",
        ],
        cwd=ROOT,
    )
    stamp.write_text(digest)
    return venv


def test(lines: list[str], pytest_args: list[str]) -> int:
    """Run the suite on each line in turn; return the exit status."""
    results = []
    for line in lines:
        started = time.monotonic()
        print(f"\n=== Airflow {RELEASES[line].airflow} ({line}) ===", flush=True)
        python = ensure_venv(line) / "bin" / "python"
        built = time.monotonic()
        tests = subprocess.run(
            [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        sys.stdout.write(tests.stdout)
        tail = tests.stdout.strip().splitlines()[-1] if tests.stdout.strip() else "no output"
        summary = re.sub(r"^=+ | =+$", "", tail)
        results.append((line, tests.returncode, summary, built - started, time.monotonic() - built))
    print("\nAirflow matrix:")
    for line, code, summary, build, duration in results:
        verdict = "ok  " if code == 0 else "FAIL"
        print(
            f"  {verdict} Airflow {RELEASES[line].airflow:<6} {summary}  "
            f"(venv {build:.0f} s, tests {duration:.0f} s)"
        )
    return 0 if all(code == 0 for _, code, *_ in results) else 1


def constraints(lines: list[str]) -> int:
    """Resolve each line's dependencies afresh and write its constraints file."""
    index = os.environ.get("MATRIX_INDEX_URL", "https://pypi.org/simple")
    for line in lines:
        release = RELEASES[line]
        with tempfile.TemporaryDirectory(prefix=f"constraints-{line}-") as scratch:
            python = new_venv(Path(scratch))
            # The machine's pip settings may add local indexes without upload times: only `index`.
            env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_CONSTRAINT": ""}
            cutoff = ["--uploaded-prior-to", f"{release.cutoff}T00:00:00Z"] if release.cutoff else []
            run(
                [
                    *(str(python), "-m", "pip", "install", "--quiet", "--index-url", index, *cutoff),
                    *(f"apache-airflow=={release.airflow}", "-e", f".[{release.extras}]"),
                ],
                cwd=ROOT,
                env=env,
            )
            frozen = subprocess.run(
                [str(python), "-m", "pip", "freeze", "--exclude-editable"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        pins = [pin for pin in frozen.splitlines() if not pin.startswith("airflow-provider-whatsinfinity")]
        header = (
            f"# Airflow {release.airflow} and everything the provider's [{release.extras}] extras need, "
            f"as resolved {'on ' + release.cutoff if release.cutoff else 'when last refreshed'}.\n"
            "# Written by `make constraints` (scripts/matrix.py); read by make venv and make test-matrix.\n"
        )
        constraints_file(line).write_text(header + "\n".join(pins) + "\n")
        print(f"wrote {constraints_file(line).relative_to(ROOT)} ({len(pins)} pins)")
    return 0


def main() -> int:
    """Parse the command line and run the command."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["test", "constraints"])
    parser.add_argument("lines", nargs="*", help=f"Airflow lines, of {', '.join(RELEASES)} (default: all)")
    args, pytest_args = parser.parse_known_args()
    # Anything that is not a line (such as a test path) goes to pytest, as PYTEST_ARGS does.
    lines = [arg for arg in args.lines if re.fullmatch(r"\d+\.\d+", arg)]
    pytest_args = [arg for arg in args.lines if arg not in lines] + pytest_args
    lines = lines or list(RELEASES)
    unknown = [line for line in lines if line not in RELEASES]
    if unknown:
        parser.error(f"unknown Airflow line(s) {', '.join(unknown)}; known: {', '.join(RELEASES)}")
    return test(lines, pytest_args) if args.command == "test" else constraints(lines)


if __name__ == "__main__":
    sys.exit(main())
