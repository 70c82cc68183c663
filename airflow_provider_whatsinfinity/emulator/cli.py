"""``whatsinfinity-emulator``: run a local stand-in for the WhatsInfinity API."""

from __future__ import annotations

import argparse
import logging
import math
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


def build_parser() -> argparse.ArgumentParser:
    """Return the command line parser; every option maps onto a field of :class:`EmulatorConfig`."""
    default = EmulatorConfig()
    parser = argparse.ArgumentParser(
        prog="whatsinfinity-emulator",
        description="A local emulator of the WhatsInfinity WhatsApp API, with a /_emulator control API.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=_non_negative(int, 65535), default=8765, help="port to listen on")
    parser.add_argument(
        "--rate-limit",
        type=_non_negative(int),
        default=default.rate_limit,
        help="messages per session per rate window",
    )
    parser.add_argument(
        "--rate-window",
        type=_non_negative(float),
        default=default.rate_window,
        help="length of a session's fixed rate window, in seconds",
    )
    parser.add_argument(
        "--queue-max",
        type=_non_negative(int),
        default=default.queue_max,
        help="messages a disconnected session may queue before sends get 503",
    )
    parser.add_argument(
        "--qr-ttl",
        type=_non_negative(float),
        default=default.qr_ttl,
        help="seconds before a QR code expires and a new one is drawn",
    )
    parser.add_argument(
        "--typing-delay",
        type=_non_negative(float),
        default=default.typing_delay,
        help="seconds a typing: true message waits before delivery",
    )
    parser.add_argument(
        "--connect-delay",
        type=_non_negative(float),
        default=default.connect_delay,
        help="seconds a linked session stays 'connecting' after a restart",
    )
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
        "--fetch-timeout",
        type=_non_negative(float),
        default=default.fetch_timeout,
        help="seconds allowed for one media download",
    )
    parser.add_argument(
        "--fetch-max-bytes",
        type=_non_negative(int),
        default=default.fetch_max_bytes,
        help="largest media file downloaded; larger ones fail the send with 400",
    )
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="keep sessions, keys and queued messages in this JSON file across restarts",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=_non_negative(int),
        default=default.max_body_bytes,
        help="largest request body accepted; larger ones get 413",
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
        config = EmulatorConfig(
            rate_limit=args.rate_limit,
            rate_window=args.rate_window,
            queue_max=args.queue_max,
            qr_ttl=args.qr_ttl,
            typing_delay=args.typing_delay,
            connect_delay=args.connect_delay,
            auto_link=args.auto_link,
            fetch_media=args.fetch_media,
            fetch_timeout=args.fetch_timeout,
            fetch_max_bytes=args.fetch_max_bytes,
            state_file=args.state_file,
            max_body_bytes=args.max_body_bytes,
        )
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
