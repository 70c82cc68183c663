"""
The sessions console in headless Chromium, as a user meets it, in a real Airflow deployment.

A real ``airflow api-server`` with the simple auth manager and two real users (``admin``, who may edit
connections, and ``viewer``, who may only read them: :mod:`tests.plugins.auth_manager`), and an
emulator whose QR codes expire within seconds. The admin signs in through Airflow's own login page,
opens the console from Airflow's navigation where Airflow has one for plugins (3.1+, inside the UI's
iframe) or at its URL (3.0), watches a session wait for its QR to be scanned, get linked, and start
linking again by pairing code; the viewer sees the same statuses and nothing to act with.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.airflow_api_server import running_api_server
from tests.common import KEY, PHONE, decode_qr
from tests.plugins.auth_manager import ConnectionReadingViewersAuthManager

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser, BrowserContext, Dialog, FrameLocator, Locator, Page, Response

    from airflow_provider_whatsinfinity.emulator import RunningEmulator

#: Seconds an emulated QR code lasts: short, so that the page's next fetch finds it expired.
QR_TTL = 5.0

pytestmark = [
    pytest.mark.ui,
    pytest.mark.timeout(300),
    pytest.mark.whatsinfinity_emulator(qr_ttl=QR_TTL),
]

REPO_ROOT = str(Path(__file__).resolve().parents[2])
CONSOLE = "/whatsinfinity/"
# The page lists every 5 s and fetches a waiting QR again 20 s after the last (console_page.py).
REFRESH = 5_000
QR_REFRESH = 20_000
NAV_ENTRY = "WhatsInfinity sessions"
PAIRING_CODE = re.compile(r"^[A-Z0-9]{8}$")
WIPE_QUESTION = "Restart {conn_id} and wipe its link? The phone must link again (QR or pairing code)."

expect.set_options(timeout=15_000)


def _accepting_dialogs(page: Page) -> list[str]:
    """Accept every dialog the page (or a frame in it) opens; return the list of their messages."""
    messages: list[str] = []

    def accept(dialog: Dialog) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    return messages


def _api_reads_token_cookie() -> bool:
    """Whether Airflow's API signs requests in by the ``_token`` cookie (Airflow 3.1+), not 3.0."""
    from airflow.api_fastapi.core_api import security

    return hasattr(security, "COOKIE_NAME_JWT_TOKEN")


def _has_external_views() -> bool:
    """Whether this Airflow puts plugins' pages in its navigation (``external_views``, Airflow 3.1+)."""
    from airflow.plugins_manager import AirflowPlugin

    return hasattr(AirflowPlugin, "external_views")


@dataclass
class Deployment:
    """A running api-server with real users: its URL, their passwords, an admin REST client."""

    url: str
    passwords: dict[str, str]
    admin_token: str
    log: Path

    def admin(self) -> httpx.Client:
        """The REST API as admin."""
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=60
        )

    def add_connection(self, conn_id: str, host: str, login: str, password: str) -> None:
        """Store a ``whatsinfinity`` connection through the REST API, as an admin would."""
        body = {"connection_id": conn_id, "conn_type": "whatsinfinity", "host": host, "login": login}
        with self.admin() as admin:
            answer = admin.post("/api/v2/connections", json={**body, "password": password})
        assert answer.status_code == 201, answer.text

    def delete_connection(self, conn_id: str) -> None:
        with self.admin() as admin:
            answer = admin.delete(f"/api/v2/connections/{conn_id}")
        assert answer.status_code == 204, answer.text


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """
    ``airflow api-server`` with the simple auth manager and users admin and viewer (no all-admins).

    As tests/plugins/conftest.py's ``airflow_server``: the auth manager lets viewers read connections.
    """
    home = tmp_path_factory.mktemp("airflow-console-ui-home")
    auth_manager = ConnectionReadingViewersAuthManager
    with running_api_server(
        home,
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin,viewer:viewer",
        AIRFLOW__CORE__AUTH_MANAGER=f"{auth_manager.__module__}.{auth_manager.__name__}",
        PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])),
    ) as (url, _):
        passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        answer = httpx.post(
            f"{url}/auth/token", json={"username": "admin", "password": passwords["admin"]}, timeout=30
        )
        assert answer.status_code in (200, 201), answer.text
        yield Deployment(url, passwords, answer.json()["access_token"], home / "api-server.log")


@dataclass
class Seen:
    """What the browser received from the api-server (HTML, JSON and text answers), to search for keys."""

    bodies: list[tuple[str, str]] = field(default_factory=list)

    def record(self, response: Response) -> None:
        kind = response.headers.get("content-type", "")
        if not any(text in kind for text in ("json", "html", "text/plain")):
            return  # scripts, styles and images are the UI's own files, or the QR (checked decoded)
        with contextlib.suppress(Exception):  # a redirect, or a page gone before its body was read
            self.bodies.append((response.url, response.text()))

    def assert_never(self, secret: str) -> None:
        assert self.bodies, "no answer recorded"
        leaks = [url for url, body in self.bodies if secret in body]
        assert not leaks, f"the API key reached the browser in {leaks}"


def _context(browser: Browser, seen: Seen | None = None, **options: Any) -> BrowserContext:
    options.setdefault("viewport", {"width": 1400, "height": 900})
    context = browser.new_context(**options)
    context.set_default_timeout(20_000)
    if seen is not None:
        context.on("response", seen.record)
    return context


def _sign_in(page: Page, deployment: Deployment, user: str, start: str = "/") -> None:
    """
    Sign in through Airflow's own login page, as a user does: open a page, get sent there, log in.

    :param start: The page opened first, which Airflow comes back to once signed in.
    """
    page.goto(f"{deployment.url}{start}")
    page.wait_for_url(re.compile(r"/auth/login"))
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(deployment.passwords[user])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    page.wait_for_load_state("networkidle")


def _open_console(page: Page, deployment: Deployment) -> Page | FrameLocator:
    """
    Open the console as a user would, and return where its page is drawn.

    Airflow 3.1+ lists it under Admin (the plugin's ``external_views``) and shows it in an iframe of
    its UI at ``/plugin/whatsinfinity``; Airflow 3.0 has no such entry, and the page is at its URL.
    """
    if not _has_external_views():
        page.goto(f"{deployment.url}{CONSOLE}")
        return page
    page.get_by_role("button", name="Admin").click()
    page.get_by_role("menuitem", name=NAV_ENTRY).click()
    # Airflow 3.3 then writes the iframe's path into the address: /plugin/whatsinfinity/whatsinfinity/
    # (a reload still shows the console: the iframe's src stays the plugin's href).
    page.wait_for_url(re.compile(r"/plugin/whatsinfinity(/|$)"))
    frame = page.frame_locator("iframe")
    expect(page.locator("iframe")).to_have_attribute("src", re.compile(r"/whatsinfinity/$"))
    return frame


def _header(console: Page | FrameLocator, name: str) -> Locator:
    """A column header of the sessions table (CSS: older Playwrights give ``th`` no columnheader role)."""
    return console.locator("#sessions thead th").filter(has_text=re.compile(f"^{name}$"))


def _png_of(img: Locator) -> bytes:
    """The PNG the page shows in an ``<img>``, pixel for pixel (drawn on a canvas: the page's CSP
    allows no ``fetch`` of its ``blob:`` URLs)."""
    data_url = img.evaluate(
        """(img) => {
            const canvas = document.createElement("canvas");
            canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
            canvas.getContext("2d").drawImage(img, 0, 0);
            return canvas.toDataURL("image/png");
        }"""
    )
    return base64.b64decode(str(data_url).split(",", 1)[1])


def _emulator_qr(emulator: RunningEmulator, session: str) -> tuple[str, float]:
    """The emulator's current QR payload for a session, and the seconds it has left."""
    answer = httpx.get(f"{emulator.url}/qr/{session}", headers={"x-api-key": KEY}, timeout=10)
    assert answer.status_code == 200, answer.text
    return decode_qr(answer.content), float(answer.headers["X-QR-Expires-In"])


def _contents(page: Page) -> str:
    """The HTML of the page and of every frame in it."""
    return "\n".join(frame.content() for frame in page.frames)


def _shot(page: Page, artifacts: Path, name: str) -> None:
    page.screenshot(path=artifacts / name, animations="disabled")


def test_admin_links_a_session_from_the_console(
    browser: Browser, deployment: Deployment, whatsinfinity_emulator: RunningEmulator, artifacts: Path
) -> None:
    emulator = whatsinfinity_emulator
    session, conn_id = "console_ui", "whatsapp_console_ui"
    emulator.create_session(session, KEY)  # not linked: waits for its QR to be scanned
    deployment.add_connection(conn_id, emulator.url, session, KEY)

    seen = Seen()
    context = _context(browser, seen)
    page = context.new_page()
    dialogs = _accepting_dialogs(page)
    loads: list[int] = []  # the statuses of the console page's loads, in the tab or its iframe
    page.on(
        "response",
        lambda response: (
            loads.append(response.status)
            if response.request.resource_type == "document" and response.url.endswith(CONSOLE)
            else None
        ),
    )
    try:
        _sign_in(page, deployment, "admin")
        console = _open_console(page, deployment)
        row = console.locator(f'#sessions tbody[data-conn-id="{conn_id}"]')
        expect(console.locator("#user")).to_have_text("admin")
        # Airflow 3.1+ signs the page in by its _token cookie; 3.0's UI keeps the token in
        # localStorage, which a navigation cannot carry: the console's sign-in page (401) hands it over
        # in a cookie for the page's path and reloads.
        assert loads == ([200] if _api_reads_token_cookie() else [401, 200]), loads
        expect(_header(console, "Actions")).to_be_visible()

        # 3. Waiting for a scan: the QR is shown by itself, and it is the emulator's current one.
        expect(row).to_have_attribute("data-status", "qr")
        expect(row.locator("td[data-field=status]")).to_have_text("qr")
        qr = row.locator(".qr img")
        expect(qr).to_be_visible()
        first_at = qr.get_attribute("data-fetched-at")
        first = decode_qr(_png_of(qr))
        current, left = _emulator_qr(emulator, session)
        # The page's QR was current when fetched; if it expired since, the emulator drew a new one.
        assert first == current or left >= QR_TTL - 1, (first, current, left)
        assert first.startswith("2@")
        _shot(page, artifacts, "console-qr.png")

        # Expired after QR_TTL s; the page fetches it again 20 s after the last time, by itself.
        expect(qr).not_to_have_attribute(
            "data-fetched-at", first_at or "", timeout=QR_REFRESH + 2 * REFRESH + 5_000
        )
        second = decode_qr(_png_of(qr))
        current, left = _emulator_qr(emulator, session)
        assert second != first
        assert second == current, (second, current, left)
        _shot(page, artifacts, "console-qr-replaced.png")

        # 4. Scanned: the row turns active at the next refresh, without a reload; the QR goes away.
        emulator.link(session)
        expect(row).to_have_attribute("data-status", "active", timeout=REFRESH + 10_000)
        expect(row.locator("td[data-field=isReady]")).to_have_text("yes")
        expect(row.locator(".qr img")).to_have_count(0)
        expect(row.locator(".result")).to_have_text("Linked: the session is active.")
        _shot(page, artifacts, "console-active.png")
        if console is not page:  # a reload of Airflow's page (or its address, bookmarked) shows it again
            page.reload()
            expect(row).to_have_attribute("data-status", "active")
            expect(row.locator(".result")).to_have_text("")

        # 5. Pairing code: the emulator gives one only to a session not linked; wipe its link first.
        # The page asks for confirmation itself: Airflow 3.1+'s iframe (sandboxed without
        # allow-modals) would answer window.confirm "no" without asking.
        row.get_by_role("button", name="Restart with wipe").click()
        expect(row.locator(".confirm")).to_contain_text(WIPE_QUESTION.format(conn_id=conn_id))
        row.get_by_role("button", name="Yes, restart and wipe").click()
        expect(row.locator(".confirm")).to_be_empty()
        expect(row.locator(".result")).to_have_text("Restarted: status qr.")
        assert dialogs == []
        expect(row).to_have_attribute("data-status", "qr")
        row.locator("input[name=phoneNumber]").fill(PHONE)
        row.get_by_role("button", name="Pairing code").click()
        code = row.locator(".result span.pairing-code")
        expect(code).to_have_text(PAIRING_CODE)
        expect(row.locator(".result")).to_contain_text("Enter this code in WhatsApp")
        expect(row).to_have_attribute("data-status", "pairing")
        expect(row.locator(".qr img")).to_have_count(0)
        _shot(page, artifacts, "console-pairing.png")

        page.reload()  # the page again, now that the session has a key, a QR and a pairing code
        page.wait_for_load_state("networkidle")
        assert KEY not in _contents(page)
    except BaseException:
        page.screenshot(path=artifacts / "console-failure.png")
        (artifacts / "console-failure.html").write_text(_contents(page))
        raise
    finally:
        context.close()
    seen.assert_never(KEY)
    assert any(CONSOLE in url for url, _ in seen.bodies)
    assert KEY not in deployment.log.read_text(errors="replace")


@pytest.mark.skipif(not _has_external_views(), reason="Airflow 3.0 shows no plugin page inside its UI")
def test_confirmations_inside_the_airflow_ui(
    browser: Browser, deployment: Deployment, whatsinfinity_emulator: RunningEmulator, artifacts: Path
) -> None:
    session, conn_id = "console_confirm", "whatsapp_console_confirm"
    whatsinfinity_emulator.create_session(session, KEY, link=True)
    deployment.add_connection(conn_id, whatsinfinity_emulator.url, session, KEY)
    context = _context(browser)
    page = context.new_page()
    dialogs = _accepting_dialogs(page)
    said: list[str] = []
    page.on("console", lambda message: said.append(message.text))
    try:
        _sign_in(page, deployment, "admin")
        console = _open_console(page, deployment)
        row = console.locator(f'#sessions tbody[data-conn-id="{conn_id}"]')
        expect(row).to_have_attribute("data-status", "active")
        # Airflow 3.1+ draws the page in an iframe sandboxed without allow-modals, where window.confirm
        # answers "no" without asking: the page asks in itself. Cancel first, then confirm.
        row.get_by_role("button", name="Restart with wipe").click()
        expect(row.locator(".confirm")).to_contain_text(WIPE_QUESTION.format(conn_id=conn_id))
        _shot(page, artifacts, "console-confirm-in-airflow-ui.png")
        row.get_by_role("button", name="Cancel").click()
        expect(row.locator(".confirm")).to_be_empty()
        page.wait_for_timeout(REFRESH + 1_000)
        expect(row).to_have_attribute("data-status", "active")  # cancelled: nothing was restarted
        row.get_by_role("button", name="Restart with wipe").click()
        row.get_by_role("button", name="Yes, restart and wipe").click()
        assert dialogs == [], f"a dialog was opened: {dialogs} {said}"
        expect(row.locator(".result")).to_have_text("Restarted: status qr.")
        expect(row).to_have_attribute("data-status", "qr")
    finally:
        context.close()


@pytest.mark.skipif(not _has_external_views(), reason="Airflow 3.0 shows no plugin page inside its UI")
def test_sign_in_again_inside_the_airflow_ui(
    browser: Browser, deployment: Deployment, whatsinfinity_emulator: RunningEmulator, artifacts: Path
) -> None:
    session, conn_id = "console_signout", "whatsapp_console_signout"
    whatsinfinity_emulator.create_session(session, KEY, link=True)
    deployment.add_connection(conn_id, whatsinfinity_emulator.url, session, KEY)
    context = _context(browser)
    page = context.new_page()
    said: list[str] = []
    page.on("console", lambda message: said.append(message.text))
    try:
        _sign_in(page, deployment, "admin")
        console = _open_console(page, deployment)
        expect(console.locator(f'tbody[data-conn-id="{conn_id}"]')).to_have_attribute("data-status", "active")
        context.clear_cookies()  # as when the Airflow session ends (signed out, or the token expired)
        banner = console.locator("#banner")
        expect(banner).to_contain_text("Your Airflow session has ended.", timeout=REFRESH + 10_000)
        banner.get_by_role("link", name="Sign in again").click()
        # In the frame: Airflow 3.1+'s iframe is sandboxed without allow-top-navigation, so the page
        # signs in where it is drawn, and Airflow's sign-in sends it back to the console.
        frame = page.frame_locator("iframe")
        frame.locator("input[name=username]").fill("admin")
        frame.locator("input[name=password]").fill(deployment.passwords["admin"])
        frame.get_by_role("button", name="Sign in").click()
        expect(frame.locator(f'tbody[data-conn-id="{conn_id}"]')).to_have_attribute("data-status", "active")
        expect(frame.locator("#banner")).to_be_hidden()
        _shot(page, artifacts, "console-sign-in-again-in-airflow-ui.png")
        assert not [text for text in said if "Unsafe attempt to initiate navigation" in text], said
    finally:
        context.close()


def test_viewer_sees_statuses_and_nothing_to_act_with(
    browser: Browser, deployment: Deployment, whatsinfinity_emulator: RunningEmulator, artifacts: Path
) -> None:
    session, conn_id = "console_viewer", "whatsapp_console_viewer"
    whatsinfinity_emulator.create_session(session, KEY)
    deployment.add_connection(conn_id, whatsinfinity_emulator.url, session, KEY)
    seen = Seen()
    context = _context(browser, seen)
    page = context.new_page()
    try:
        # Straight to the console without being signed in: its sign-in page sends the browser to
        # Airflow's login, which comes back to the console.
        _sign_in(page, deployment, "viewer", start=CONSOLE)
        expect(page).to_have_url(f"{deployment.url}{CONSOLE}")
        row = page.locator(f'#sessions tbody[data-conn-id="{conn_id}"]')
        expect(row).to_have_attribute("data-status", "qr")
        expect(page.locator("#user")).to_have_text("viewer")
        expect(page.locator("header")).to_contain_text("read only")
        expect(_header(page, "Actions")).to_have_count(0)
        expect(_header(page, "Status")).to_be_visible()
        expect(row.get_by_role("button")).to_have_count(0)
        expect(page.locator(".qr img, input[name=phoneNumber]")).to_have_count(0)
        _shot(page, artifacts, "console-viewer.png")
        assert KEY not in page.content()
    except BaseException:
        page.screenshot(path=artifacts / "console-viewer-failure.png")
        raise
    finally:
        context.close()
    seen.assert_never(KEY)
    assert not [url for url, _ in seen.bodies if url.endswith("/qr")]


def test_readme_screenshot(
    browser: Browser, deployment: Deployment, whatsinfinity_emulator: RunningEmulator, artifacts: Path
) -> None:
    # A clean picture of the console for the README: one session active, one waiting for its QR to be
    # scanned, one whose connection holds a wrong key. Only these rows: the other tests' go first.
    emulator = whatsinfinity_emulator
    with deployment.admin() as admin:
        listed = admin.get("/api/v2/connections", params={"limit": 100}).json()["connections"]
    for connection in listed:
        deployment.delete_connection(connection["connection_id"])
    emulator.create_session("alerts", KEY, link=True)
    emulator.create_session("onboarding", KEY)
    rows = {
        "whatsapp_alerts": ("alerts", KEY),
        "whatsapp_onboarding": ("onboarding", KEY),
        "whatsapp_reports": ("alerts", "an-old-key-rotated-away"),
    }
    for conn_id, (session, key) in rows.items():
        deployment.add_connection(conn_id, emulator.url, session, key)

    context = _context(browser, viewport={"width": 1200, "height": 520})
    page = context.new_page()
    try:
        _sign_in(page, deployment, "admin")
        page.goto(f"{deployment.url}{CONSOLE}")
        expect(page.locator('tbody[data-conn-id="whatsapp_alerts"]')).to_have_attribute(
            "data-status", "active"
        )
        expect(page.locator('tbody[data-conn-id="whatsapp_onboarding"] .qr img')).to_be_visible()
        expect(page.locator('tbody[data-conn-id="whatsapp_reports"] td[data-field=problem]')).to_contain_text(
            "wrong API key"
        )
        page.wait_for_function("[...document.images].every((img) => img.complete && img.naturalWidth)")
        time.sleep(0.2)
        assert page.evaluate("document.documentElement.scrollWidth") <= 1200  # no column cut off
        page.screenshot(path=artifacts / "console-readme.png", animations="disabled", full_page=True)
    finally:
        context.close()
