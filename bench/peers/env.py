"""The peers' software: Arroyo from the ``peers`` extra, Quix Streams in a virtual environment of its own.

Quix Streams 3.28.1 requires ``confluent-kafka<2.13``; sentry-arroyo 2.48.0 requires ``>=2.13.2``, and
evpipe runs on the newer client. The two cannot share one environment, so the ``peers`` extra pins
Arroyo, and the bench installs the pinned Quix Streams into a virtual environment under the user's
cache directory on first use (its consumer runs as a separate process anyway, for the kill -9 test).
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

ARROYO_VERSION = "2.48.0"  # the pin in pyproject.toml's `peers` extra
QUIX_VERSION = "3.28.1"
QUIX_REQUIREMENTS = (f"quixstreams=={QUIX_VERSION}", "pyarrow>=17")
INSTALL_HINT = '.venv/bin/pip install -e ".[test,bench,peers]"'


def require_arroyo() -> str:
    """Arroyo's installed version; a RuntimeError naming the install command when the extra is missing."""
    try:
        version = importlib.metadata.version("sentry-arroyo")
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(f"the peers extra is missing (sentry-arroyo): install it with {INSTALL_HINT}") from None
    if version != ARROYO_VERSION:
        print(f"warning: sentry-arroyo {version} installed, the peers extra pins {ARROYO_VERSION}", flush=True)
    return version


def quix_venv() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "evpipe" / "bench-peers" / f"quixstreams-{QUIX_VERSION}"


def quix_python() -> Path:
    """The interpreter of Quix Streams' environment, made (once) when missing.

    BENCH_QUIX_PYTHON names another interpreter that has quixstreams and pyarrow installed."""
    if os.environ.get("BENCH_QUIX_PYTHON"):
        return Path(os.environ["BENCH_QUIX_PYTHON"])
    venv = quix_venv()
    python = venv / "bin" / "python"
    if _has_quix(python):
        return python
    print(f"installing quixstreams=={QUIX_VERSION} into {venv} (once) ...", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)  # the interpreter this venv was made from
    try:
        subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *QUIX_REQUIREMENTS], check=True,
                       capture_output=True, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        output = getattr(exc, "stderr", b"") or b""
        raise RuntimeError(f"could not install {' '.join(QUIX_REQUIREMENTS)} into {venv}: "
                           f"{output.decode(errors='replace')[-800:]}; install it by hand with "
                           f"`python -m venv {venv} && {python} -m pip install "
                           f"{' '.join(repr(r) for r in QUIX_REQUIREMENTS)}`") from None
    if not _has_quix(python):
        raise RuntimeError(f"quixstreams=={QUIX_VERSION} did not import in {venv}")
    return python


def _has_quix(python: Path) -> bool:
    if not python.exists():
        return False
    check = ("import importlib.metadata as m, pyarrow, quixstreams; "
             f"raise SystemExit(m.version('quixstreams') != {QUIX_VERSION!r})")
    return subprocess.run([str(python), "-c", check], capture_output=True, timeout=120, check=False).returncode == 0
