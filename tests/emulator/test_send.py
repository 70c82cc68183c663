"""POST /send: validation, media detection, dry runs, delivery, the queue and the rate limit."""

from __future__ import annotations

import time

import pytest

from tests.common import KEY, PHONE, SESSION


def text(message: str = "hello", **extra):
    return {"sessionId": SESSION, "to": PHONE, "type": "text", "message": message, **extra}


def media(url: str, send_type: str = "media", **extra):
    return {"sessionId": SESSION, "to": PHONE, "type": send_type, "url": url, **extra}


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ({"sessionId": SESSION, "type": "text", "message": "x"}, "Missing required field: to"),
        ({"sessionId": SESSION, "to": PHONE, "message": "x"}, "Missing required field: type"),
        (text(to="123456"), "Invalid phone number"),
        (text(to="1234567890123456"), "Invalid phone number"),
        (text(to="+919999999999"), "Invalid phone number"),
        (text(to="91 9999 99999"), "Invalid phone number"),
        (text(type="sticker"), "Invalid type 'sticker'"),
        (text(message=""), "must not be empty"),
        (text(message="   "), "must not be empty"),
        (text(message="x" * 65001), "Message too long: 65001"),
        ({"sessionId": SESSION, "to": PHONE, "type": "text"}, "Missing required field: message"),
        ({"sessionId": SESSION, "to": PHONE, "type": "image"}, "Missing required field: url"),
        (media("files.example.com/a.jpg", "image"), "Invalid URL format"),
        (media("ftp://files.example.com/a.jpg", "image"), "Invalid URL format"),
        (media("https:///a.jpg", "image"), "Invalid URL format"),
        (media("https://files.example.com/a b.jpg", "image"), "Invalid URL format"),
        (media("https://files.example.com:99999/a.jpg", "image"), "Invalid URL format"),
        (media("https://files.example.com/archive.rar"), "Cannot detect the media type"),
        (media("https://files.example.com/noextension"), "Cannot detect the media type"),
        (media("https://files.example.com/a.pdf", "document", fileName=""), "fileName"),
        (text(typing="true"), "Field 'typing' must be a boolean"),
        (text(dryRun=1), "Field 'dryRun' must be a boolean"),
        (media("https://files.example.com/a.jpg", caption=5), "Field 'caption' must be a string"),
    ],
)
def test_invalid_sends_are_rejected_and_deliver_nothing(linked, api, body, hint):
    answer = api.post("/send", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["success"] is False
    assert hint in answer.json()["details"]
    assert linked.outbox() == []
    assert api.get(f"/check-session/{SESSION}").json()["data"]["rateLimitRemaining"] == 10


def test_longest_message_is_accepted(linked, api):
    assert api.post("/send", json=text("x" * 65000)).status_code == 200
    assert len(linked.outbox()[0]["message"]) == 65000


EMOJI = "\U0001f600"  # outside the Basic Multilingual Plane: two UTF-16 code units


def test_message_length_counts_utf16_code_units(linked, api):
    # The service is JavaScript: message.length counts UTF-16 code units, so an emoji counts 2.
    assert api.post("/send", json=text(EMOJI * 32500)).status_code == 200
    assert linked.outbox()[0]["message"] == EMOJI * 32500
    answer = api.post("/send", json=text(EMOJI * 32501))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "Bad Request"
    assert "Message too long: 65002" in answer.json()["details"]
    assert len(linked.outbox()) == 1


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://files.example.com/" + "a" * 40000 + ".jpg", "characters long, more than the"),
        ("https://files.example.com/a b.jpg", "whitespace"),
        ("ftp://files.example.com/a.jpg", "not an http(s) URL"),
        ("https:///a.jpg", "no host"),
    ],
    ids=["too-long", "whitespace", "ftp", "no-host"],
)
def test_refused_url_says_why(linked, api, url, reason):
    answer = api.post("/send", json=media(url, "image"))
    assert answer.status_code == 400, answer.text
    details = answer.json()["details"]
    assert details.startswith("Invalid URL format")
    assert reason in details
    assert len(details) < 300  # the URL is shortened, not echoed whole


@pytest.mark.parametrize(
    ("path", "kind", "mimetype"),
    [
        ("photo.jpg", "image", "image/jpeg"),
        ("photo.JPEG", "image", "image/jpeg"),
        ("chart.png", "image", "image/png"),
        ("anim.gif", "image", "image/gif"),
        ("pic.webp", "image", "image/webp"),
        ("clip.mp4", "video", "video/mp4"),
        ("voice.mp3", "audio", "audio/mpeg"),
        ("voice.ogg", "audio", "audio/ogg"),
        ("voice.opus", "audio", "audio/opus"),
        ("voice.m4a", "audio", "audio/mp4"),
        ("report.pdf", "document", "application/pdf"),
        ("letter.doc", "document", "application/msword"),
        ("letter.docx", "document", None),
        ("sheet.xls", "document", "application/vnd.ms-excel"),
        ("sheet.xlsx", "document", None),
        ("deck.ppt", "document", "application/vnd.ms-powerpoint"),
        ("deck.pptx", "document", None),
        ("data.csv", "document", "text/csv"),
        ("notes.txt", "document", "text/plain"),
        ("bundle.zip", "document", "application/zip"),
        ("dir/report%20final.pdf?sig=abc.jpg", "document", "application/pdf"),
    ],
)
def test_media_type_is_detected_from_the_url_path(linked, api, path, kind, mimetype):
    answer = api.post("/send", json=media(f"https://files.example.com/{path}", dryRun=True))
    payload = answer.json()["data"]["payload"]
    assert payload[kind] == {"url": f"https://files.example.com/{path}"}
    if mimetype:
        assert payload["mimetype"] == mimetype
    assert linked.outbox() == []


def test_dry_run_payloads_are_shaped_like_the_message(linked, api):
    def dry(body):
        data = api.post("/send", json={**body, "dryRun": True}).json()["data"]
        assert (data["queued"], data["dryRun"], data["to"]) == (True, True, f"{PHONE}@s.whatsapp.net")
        return data["payload"]

    url = "https://files.example.com/invoice.pdf"
    assert dry(text("Dry run test")) == {"text": "Dry run test"}
    assert dry(media(url, "document", fileName="April.pdf", caption="April invoice")) == {
        "document": {"url": url},
        "mimetype": "application/pdf",
        "fileName": "April.pdf",
        "caption": "April invoice",
    }
    # A document without fileName is named after the URL's last segment.
    assert dry(media(url, "document"))["fileName"] == "invoice.pdf"
    assert dry(media("https://files.example.com/p.png", "image", caption="c")) == {
        "image": {"url": "https://files.example.com/p.png"},
        "mimetype": "image/png",
        "caption": "c",
    }
    # Audio carries no caption; an explicit type wins over the extension.
    assert dry(media("https://files.example.com/v.mp3", "audio", caption="ignored")) == {
        "audio": {"url": "https://files.example.com/v.mp3"},
        "mimetype": "audio/mpeg",
    }
    assert dry(media("https://files.example.com/download", "video")) == {
        "video": {"url": "https://files.example.com/download"},
        "mimetype": "video/mp4",
    }
    assert linked.outbox() == []


def test_dry_runs_use_neither_rate_limit_nor_queue(whatsinfinity_emulator, api):
    whatsinfinity_emulator.create_session(SESSION, KEY)
    for _ in range(15):
        assert api.post("/send", json=text(dryRun=True)).status_code == 200
    data = api.get(f"/check-session/{SESSION}").json()["data"]
    assert (data["queueSize"], data["rateLimitRemaining"]) == (0, 10)


def test_active_session_delivers_at_once(linked, api):
    data = api.post("/send", json=text("now")).json()["data"]
    assert data["queued"] is False
    assert data["messageId"].startswith("3EB0")
    [sent] = linked.outbox()
    assert sent["messageId"] == data["messageId"]
    assert (sent["sessionId"], sent["to"], sent["type"], sent["message"]) == (SESSION, PHONE, "text", "now")
    assert sent["deliveredAt"].endswith("Z")


def test_outbox_records_media_fields(linked, api):
    api.post("/send", json=media("https://files.example.com/r.pdf", "media", caption="Q3", fileName="Q3.pdf"))
    [sent] = linked.outbox()
    assert sent["type"] == "document"
    assert (sent["url"], sent["caption"], sent["fileName"]) == (
        "https://files.example.com/r.pdf",
        "Q3",
        "Q3.pdf",
    )
    assert "size" not in sent  # only with --fetch-media


def test_outbox_filters_by_session(whatsinfinity_emulator, api):
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    whatsinfinity_emulator.create_session("other", "other-key-0123456789", link=True)
    api.post("/send", json=text("mine"))
    api.post(
        "/send", json={**text("theirs"), "sessionId": "other"}, headers={"x-api-key": "other-key-0123456789"}
    )
    assert [m["message"] for m in whatsinfinity_emulator.outbox(SESSION)] == ["mine"]
    assert [m["message"] for m in whatsinfinity_emulator.outbox()] == ["mine", "theirs"]


def test_unregistered_number_is_422(linked, api):
    linked.mark_unregistered("15550001111")
    answer = api.post("/send", json=text(to="15550001111"))
    assert answer.status_code == 422
    assert "15550001111" in answer.json()["details"]
    assert api.post("/send", json=text(to="15550001111", dryRun=True)).status_code == 422
    assert linked.outbox() == []


def test_disabled_session_is_409(linked, api):
    linked.disable(SESSION)
    answer = api.post("/send", json=text())
    assert answer.status_code == 409
    assert "disabled" in answer.json()["details"]
    assert linked.outbox() == []


@pytest.mark.whatsinfinity_emulator(typing_delay=0.4)
def test_typing_delays_delivery(whatsinfinity_emulator, api):
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    started = time.monotonic()
    api.post("/send", json=text("typed", typing=True))
    typed = time.monotonic() - started
    started = time.monotonic()
    api.post("/send", json=text("plain"))
    plain = time.monotonic() - started
    assert typed >= 0.4
    assert plain < 0.4
    assert [m["message"] for m in whatsinfinity_emulator.outbox()] == ["typed", "plain"]


@pytest.mark.parametrize("status", ["qr", "pairing", "connecting", "disconnected"])
@pytest.mark.whatsinfinity_emulator(connect_delay=30)
def test_sends_queue_while_not_active(whatsinfinity_emulator, api, status):
    whatsinfinity_emulator.create_session(SESSION, KEY)
    if status == "pairing":
        api.post("/pairing-code", json={"sessionId": SESSION, "phoneNumber": PHONE})
    elif status == "connecting":
        whatsinfinity_emulator.link(SESSION)
        api.post("/restart-session", json={"sessionId": SESSION})
    elif status == "disconnected":
        whatsinfinity_emulator.link(SESSION)
        whatsinfinity_emulator.disconnect(SESSION)
    assert api.get(f"/check-session/{SESSION}").json()["data"]["status"] == status
    data = api.post("/send", json=text("later")).json()["data"]
    assert data["queued"] is True
    assert api.get(f"/check-session/{SESSION}").json()["data"]["queueSize"] == 1
    assert whatsinfinity_emulator.outbox() == []
    whatsinfinity_emulator.link(SESSION)
    assert [m["messageId"] for m in whatsinfinity_emulator.outbox()] == [data["messageId"]]


@pytest.mark.whatsinfinity_emulator(rate_limit=1000)
def test_queue_holds_100_then_503_then_delivers_in_order(whatsinfinity_emulator, api):
    whatsinfinity_emulator.create_session(SESSION, KEY)
    ids = [api.post("/send", json=text(f"m{i}")).json()["data"]["messageId"] for i in range(100)]
    full = api.post("/send", json=text("one too many"))
    assert full.status_code == 503
    assert "Message queue full" in full.json()["details"]
    assert api.get(f"/check-session/{SESSION}").json()["data"]["queueSize"] == 100
    whatsinfinity_emulator.link(SESSION)
    outbox = whatsinfinity_emulator.outbox()
    assert [m["messageId"] for m in outbox] == ids
    assert [m["message"] for m in outbox] == [f"m{i}" for i in range(100)]
    assert all(m["queued"] for m in outbox)
    assert api.get(f"/check-session/{SESSION}").json()["data"]["queueSize"] == 0


@pytest.mark.whatsinfinity_emulator(rate_limit=3, rate_window=1)
def test_rate_limit_window(whatsinfinity_emulator, api):
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    remaining = []
    for i in range(3):
        assert api.post("/send", json=text(f"m{i}")).status_code == 200
        remaining.append(api.get(f"/check-session/{SESSION}").json()["data"]["rateLimitRemaining"])
    assert remaining == [2, 1, 0]
    limited = api.post("/send", json=text("too fast"))
    assert limited.status_code == 429
    assert limited.json()["retryAfter"] == 1
    assert limited.headers["retry-after"] == "1"
    # Refused sends do not count, and a new window starts once the old one is over.
    time.sleep(1.05)
    assert api.get(f"/check-session/{SESSION}").json()["data"]["rateLimitRemaining"] == 3
    assert api.post("/send", json=text("m3")).status_code == 200
    assert [m["message"] for m in whatsinfinity_emulator.outbox()] == ["m0", "m1", "m2", "m3"]


@pytest.mark.whatsinfinity_emulator(rate_limit=2, rate_window=60)
def test_rate_limit_is_per_session_and_counts_queued_sends(whatsinfinity_emulator, api):
    whatsinfinity_emulator.create_session(SESSION, KEY)
    whatsinfinity_emulator.create_session("other", "other-key-0123456789", link=True)
    assert [api.post("/send", json=text()).status_code for _ in range(3)] == [200, 200, 429]
    other = {**text(), "sessionId": "other"}
    answer = api.post("/send", json=other, headers={"x-api-key": "other-key-0123456789"})
    assert answer.status_code == 200
    assert 55 <= api.post("/send", json=text()).json()["retryAfter"] <= 60
