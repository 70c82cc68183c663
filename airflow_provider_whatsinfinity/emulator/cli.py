"""``whatsinfinity-emulator``: run a local stand-in for the WhatsInfinity API."""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_provider_whatsinfinity.emulator.config import EmulatorConfig

if TYPE_CHECKING:
    from collections.abc import Callable


def _non_negative(kind: type[int] | type[float], maximum: float = math.inf) -> Callable[[str], int | float]:
    what = "whole number" if kind is int else "number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"{text!r} must be at most {maximum:g}")
        return value

    return parse


# Numeric settings: (EmulatorConfig field, type, help). The option is the field with dashes.
NUMERIC_OPTIONS: list[tuple[str, type[int] | type[float], str]] = [
    ("rate_limit", int, "messages per session per rate window"),
    ("rate_window", float, "length of a session's fixed rate window, in seconds"),
    ("queue_max", int, "messages a disconnected session may queue before sends get 503"),
    ("qr_ttl", float, "seconds before a QR code expires and a new one is drawn"),
    ("typing_delay", float, "seconds a typing: true message waits before delivery"),
    ("connect_delay", float, "seconds a linked session stays 'connecting' after a restart"),
    ("fetch_timeout", float, "seconds allowed for one whole media download"),
    ("fetch_max_bytes", int, "largest media file downloaded; larger ones fail the send with 400"),
    ("max_body_bytes", int, "largest request body accepted; larger ones get 413"),
]


def build_parser() -> argparse.ArgumentParser:
    """Return the command line parser; every setting option maps onto a field of :class:`EmulatorConfig`."""
    default = EmulatorConfig()
    parser = argparse.ArgumentParser(
        prog="whatsinfinity-emulator",
        description="A local emulator of the WhatsInfinity WhatsApp API, with a /_emulator control API.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=_non_negative(int, 65535), default=8765, help="port to listen on")
    for name, kind, text in NUMERIC_OPTIONS:
        option = "--" + name.replace("_", "-")
        parser.add_argument(option, type=_non_negative(kind), default=getattr(default, name), help=text)
    parser.add_argument(
        "--auto-link",
        type=_non_negative(float),
        default=None,
        metavar="SECONDS",
        help="link every new session after this delay, as if its QR were scanned",
    )
    parser.add_argument(
        "--fetch-media",
        action="store_true",
        help="download media URLs on send, record size and sha256, 400 when they fail",
    )
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="keep sessions, keys and messages in this JSON file across restarts; each change is "
        "appended to STATE_FILE.journal beside it, and folded into the file now and then",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="server log level",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """
    Run the emulator in the foreground until interrupted.

    :param argv: Command line arguments; ``sys.argv`` when ``None``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = EmulatorConfig(**{field.name: getattr(args, field.name) for field in fields(EmulatorConfig)})
    except ValueError as exc:
        parser.error(str(exc))

    import uvicorn

    from airflow_provider_whatsinfinity.emulator.app import EmulatorApp
    from airflow_provider_whatsinfinity.emulator.server import uvicorn_config

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        app = EmulatorApp(config)
    except RuntimeError as exc:
        parser.exit(2, f"whatsinfinity-emulator: {exc}\n")
    uvicorn.Server(uvicorn_config(app, host=args.host, port=args.port, log_level=args.log_level)).run()


if __name__ == "__main__":
    main()
