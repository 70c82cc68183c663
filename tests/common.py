"""Values every test shares: the default session, its key, a phone number, a connection's JSON."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_whatsinfinity._compat import airflow_version

if TYPE_CHECKING:
    from collections.abc import Iterator

SESSION = "mysession"
KEY = "your-session-api-key"
PHONE = "919999999999"


def connection_json(url: str, login: str = SESSION, password: str = KEY, **extra: object) -> str:
    """An AIRFLOW_CONN_... value in JSON form for a WhatsInfinity connection."""
    return json.dumps(
        {"conn_type": "whatsinfinity", "host": url, "login": login, "password": password, "extra": extra}
    )


def needs_airflow_feature(present: bool, feature: str, release: str) -> pytest.MarkDecorator:
    """Skip a test on an Airflow without a feature; the reason names the version and the feature."""
    return pytest.mark.skipif(
        not present, reason=f"Airflow {airflow_version()} has no {feature} (Airflow {release}+)"
    )


@contextlib.contextmanager
def captured_logs(*loggers: str) -> Iterator[list[dict[str, Any]]]:
    """
    Collect the log lines written meanwhile, through structlog or through stdlib ``logging``.

    Operators, sensors and notifiers log through structlog on Airflow 3.1+ and through ``logging`` on
    3.0; ``structlog.testing.capture_logs`` sees only the first. Each line is a dict with at least
    ``event`` (the message, its %-arguments filled in), ``log_level`` (lower-case) and ``logger``;
    a stdlib line logged with an exception also has ``exc_info`` (the exception).

    Not thread-safe for structlog's part, like ``capture_logs``.

    :param loggers: More stdlib loggers to let through at INFO, besides Airflow's task loggers and
        this provider's.
    """
    import structlog

    entries: list[dict[str, Any]] = []

    def from_structlog(_logger: Any, method_name: str, event_dict: Any) -> Any:
        entry = dict(event_dict)
        arguments = entry.pop("positional_args", None)
        entry["event"] = str(entry.get("event")) % arguments if arguments else str(entry.get("event"))
        entry.setdefault("log_level", "warning" if method_name == "warn" else method_name)
        entry["log_level"] = str(entry["log_level"]).lower()
        entries.append(entry)
        raise structlog.DropEvent

    class FromLogging(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            entry: dict[str, Any] = {
                "event": record.getMessage(),
                "log_level": record.levelname.lower(),
                "logger": record.name,
            }
            if record.exc_info and record.exc_info[1] is not None:
                entry["exc_info"] = record.exc_info[1]
            entries.append(entry)

    # Every line must reach the root logger at INFO: Airflow's task loggers may stop propagating.
    opened = [
        logging.getLogger(name) for name in ("", "airflow.task", "airflow_provider_whatsinfinity", *loggers)
    ]
    saved = [(logger, logger.level, logger.propagate, logger.disabled) for logger in opened]
    for logger in opened:
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.propagate = True
        logger.disabled = False
    handler = FromLogging(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    # As structlog.testing.capture_logs: the configured list is changed in place, never replaced,
    # since bound loggers hold it.
    processors = structlog.get_config()["processors"]
    configured = list(processors)
    processors.clear()
    processors.append(from_structlog)
    structlog.configure(processors=processors)
    try:
        yield entries
    finally:
        processors.clear()
        processors.extend(configured)
        structlog.configure(processors=processors)
        root.removeHandler(handler)
        for logger, level, propagate, disabled in saved:
            logger.setLevel(level)
            logger.propagate = propagate
            logger.disabled = disabled


def decode_qr(png: bytes) -> str:
    """The text of the one QR code in a PNG.

    Only QR codes are looked for: zxing-cpp, now and then, also reads a stretch of the QR's modules as a
    short 1D code (Codabar, ITF, Code 39), and reports one QR code twice.
    """
    import io

    import zxingcpp
    from PIL import Image

    [text] = {
        str(code.text)
        for code in zxingcpp.read_barcodes(
            Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
        )
    }
    return text
