"""What a phone scans or types to link a session: QR payloads, their PNG, and pairing codes."""

from __future__ import annotations

import io
import secrets

PAIRING_ALPHABET = "ABCDEFGHJKLMNPQRSTVWXYZ0123456789"


def new_qr_value() -> str:
    """Return a fresh QR payload, shaped like WhatsApp's own: ref, public key, identity key, adv secret."""
    parts = [secrets.token_urlsafe(n) for n in (48, 32, 32, 24)]
    return "2@" + ",".join(parts)


def qr_png(value: str) -> bytes:
    """Return a QR code of ``value`` as a PNG that a phone (or zxing) can scan. :param value: Payload."""
    import segno  # only sessions showing a QR need it

    buffer = io.BytesIO()
    segno.make(value, error="m", micro=False).save(buffer, kind="png", scale=6, border=4)
    return buffer.getvalue()


def new_pairing_code() -> str:
    """Return an 8-character pairing code; no I, O or U, which read like 1, 0 and V."""
    return "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(8))
