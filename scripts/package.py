"""
Check what a release ships (``make package``): build, check the metadata, install the wheel alone.

1. ``python -m build`` makes the wheel and the sdist in ``dist/``.
2. ``twine check --strict`` reads their metadata (and the README as PyPI renders it).
3. The wheel goes into a new venv with the newest Airflow's constraints and nothing else of the
   project: ``airflow providers list`` must show the provider at the package's version, ``airflow
   providers hooks`` its connection type, and the emulator's console script must start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from matrix import NEWEST, constraints_file, new_venv  # noqa: E402

DIST = ROOT / "dist"
PACKAGE = "airflow-provider-whatsinfinity"


def run(command: list[str], **kwargs: object) -> str:
    """Run a command, echoing it; return its output, and stop the script when it fails."""
    print("+", " ".join(command), flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return str(done.stdout)


def version() -> str:
    """Return the version the package defines (in its ``__init__``, read the way setuptools reads it)."""
    namespace: dict[str, str] = {}
    for line in (ROOT / "airflow_provider_whatsinfinity" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            exec(line, namespace)
    return namespace["__version__"]


def json_of(output: str) -> list[dict[str, str]]:
    """Return the JSON list an ``airflow ... -o json`` command printed among its log lines."""
    [listing] = [line for line in output.splitlines() if line.startswith("[{")]
    return list(json.loads(listing))


def main() -> int:
    """Build, check and install the distributions; return the exit status."""
    expected = version()
    shutil.rmtree(DIST, ignore_errors=True)
    run([sys.executable, "-m", "build", "--outdir", str(DIST), str(ROOT)])
    wheels = sorted(DIST.glob("*.whl"))
    sdists = sorted(DIST.glob("*.tar.gz"))
    stem = PACKAGE.replace("-", "_")
    if [w.name for w in wheels] != [f"{stem}-{expected}-py3-none-any.whl"] or [s.name for s in sdists] != [
        f"{stem}-{expected}.tar.gz"
    ]:
        sys.exit(f"unexpected distributions in dist/: {sorted(p.name for p in DIST.iterdir())}")
    run([sys.executable, "-m", "twine", "check", "--strict", *map(str, wheels + sdists)])

    with tempfile.TemporaryDirectory(prefix="wheel-check-") as scratch:
        venv, home = Path(scratch) / "venv", Path(scratch) / "airflow-home"
        python, airflow = new_venv(venv), venv / "bin" / "airflow"
        run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "-c",
                str(constraints_file(NEWEST)),
                str(wheels[0]),
            ]
        )
        env = {
            **{name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")},
            "AIRFLOW_HOME": str(home),
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        }
        listed = json_of(run([str(airflow), "providers", "list", "-o", "json"], env=env, cwd=scratch))
        ours = [p for p in listed if p["package_name"] == PACKAGE]
        if [p["version"] for p in ours] != [expected]:
            sys.exit(f"`airflow providers list` does not show {PACKAGE} {expected}: {ours or 'absent'}")
        hooks = run([str(airflow), "providers", "hooks", "-o", "json"], env=env, cwd=scratch)
        if not any(h.get("connection_type") == "whatsinfinity" for h in json_of(hooks)):
            sys.exit("`airflow providers hooks` does not list the whatsinfinity connection type")
        run([str(venv / "bin" / "whatsinfinity-emulator"), "--help"], env=env, cwd=scratch)
    print(f"ok: {wheels[0].name} and {sdists[0].name} build, pass twine check, and install on their own")
    return 0


if __name__ == "__main__":
    sys.exit(main())
