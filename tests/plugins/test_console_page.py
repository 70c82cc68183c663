"""The sessions console's page and its guards, served by a real Airflow api-server (no browser)."""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from typing import TYPE_CHECKING, Any

import httpx

from airflow_provider_whatsinfinity.plugins.console_page import CSRF_HEADER, CSRF_HEADER_VALUE
from tests.airflow_api_server import running_api_server
from tests.common import KEY
from tests.plugins.auth_manager import PRIVATE_PREFIX

if TYPE_CHECKING:
    import pytest

    from tests.plugins.conftest import AirflowServer

PAGE = "/whatsinfinity/"
API = "/whatsinfinity/api/sessions"
SIGN_IN = "/api/v2/auth/login?next=%2Fwhatsinfinity%2F"


def _by_cookie(server: AirflowServer, user: str, **headers: str) -> httpx.Client:
    """A client signed in as a browser is: the token in Airflow's ``_token`` cookie, no header."""
    return httpx.Client(
        base_url=server.url, cookies={"_token": server.tokens[user]}, headers=headers, timeout=60
    )


def _config(page: httpx.Response) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="console-config"[^>]*>(.*?)</script>', page.text)
    assert found, page.text[:500]
    config: dict[str, Any] = json.loads(found.group(1))
    return config


def _session_on_emulator(emulator: Any, server: AirflowServer) -> tuple[str, str]:
    session = f"s{uuid.uuid4().hex[:10]}"
    emulator.create_session(session, KEY, link=True)
    return session, server.add_connection(emulator.url, session, KEY)


def _session_exists(emulator: Any, session: str) -> bool:
    answer = httpx.get(f"{emulator.url}/check-session/{session}", headers={"x-api-key": KEY})
    assert answer.status_code in (200, 404), answer.text
    return answer.status_code == 200


def test_anonymous_is_sent_to_airflows_sign_in_and_sees_no_data(airflow_server):
    with airflow_server.client(None) as anonymous:
        answer = anonymous.get(PAGE)
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("text/html")
    assert SIGN_IN in answer.text
    assert "<table" not in answer.text
    assert "console-config" not in answer.text


def test_a_bad_token_signs_in_again(airflow_server):
    for client in (
        httpx.Client(base_url=airflow_server.url, cookies={"_token": "not.a.token"}),
        httpx.Client(base_url=airflow_server.url, headers={"Authorization": "Bearer not.a.token"}),
    ):
        with client:
            answer = client.get(PAGE)
        assert answer.status_code == 401, answer.text[:300]
        assert SIGN_IN in answer.text


def test_page_for_an_editor_and_for_a_reader(airflow_server):
    with airflow_server.client("admin") as admin, airflow_server.client("viewer") as viewer:
        as_admin, as_viewer = admin.get(PAGE), viewer.get(PAGE)
    assert (as_admin.status_code, as_viewer.status_code) == (200, 200)
    assert _config(as_admin)["canEdit"] is True
    assert _config(as_viewer)["canEdit"] is False
    assert "<th>Actions</th>" in as_admin.text
    assert "<th>Actions</th>" not in as_viewer.text
    assert "read only" in as_viewer.text
    assert _config(as_admin)["apiBase"] == API
    assert _config(as_admin)["loginUrl"] == SIGN_IN


def test_page_loads_nothing_from_elsewhere_and_runs_only_its_own_scripts(airflow_server):
    with airflow_server.client("admin") as admin:
        page = admin.get(PAGE)
    policy = page.headers["content-security-policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", policy)
    assert nonce, policy
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'self'" in policy
    assert page.headers["cache-control"] == "no-store"
    tags = re.findall(r"<(script|style)\b([^>]*)>", page.text)
    assert tags
    for name, attributes in tags:
        assert f'nonce="{nonce.group(1)}"' in attributes, (name, attributes)
        assert "src=" not in attributes
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)
    with airflow_server.client("admin") as admin:
        assert admin.get(PAGE).headers["content-security-policy"] != policy  # a nonce per answer


def test_page_and_list_work_with_airflows_token_cookie(airflow_server, whatsinfinity_emulator):
    _, conn_id = _session_on_emulator(whatsinfinity_emulator, airflow_server)
    with _by_cookie(airflow_server, "admin") as browser:
        page = browser.get(PAGE)
        listed = browser.get(API)
    assert page.status_code == 200, page.text[:300]
    assert listed.status_code == 200, listed.text
    assert conn_id in {row["connId"] for row in listed.json()}
    for answer in (page, listed):
        assert KEY not in answer.text


def test_changes_by_cookie_need_the_consoles_header(airflow_server, whatsinfinity_emulator):
    session, conn_id = _session_on_emulator(whatsinfinity_emulator, airflow_server)
    with _by_cookie(airflow_server, "admin") as forged:
        refused = forged.post(f"{API}/{conn_id}/delete")
    assert refused.status_code == 403, refused.text
    assert CSRF_HEADER in refused.json()["error"]
    assert _session_exists(whatsinfinity_emulator, session)

    with _by_cookie(airflow_server, "admin", **{CSRF_HEADER: CSRF_HEADER_VALUE}) as console:
        deleted = console.post(f"{API}/{conn_id}/delete")
    assert deleted.status_code == 200, deleted.text
    assert not _session_exists(whatsinfinity_emulator, session)


def test_a_cookie_with_any_authorization_header_still_needs_the_consoles_header(
    airflow_server, whatsinfinity_emulator
):
    # A proxy's Basic or Negotiate credentials, which a browser adds by itself, or a header that is
    # no valid bearer token: Airflow then signs the request in by the cookie.
    session, conn_id = _session_on_emulator(whatsinfinity_emulator, airflow_server)
    for authorization in ("Basic dXNlcjpwYXNz", "Bearer", "", f"Bearer {airflow_server.tokens['viewer']}"):
        with _by_cookie(airflow_server, "admin", Authorization=authorization) as forged:
            answer = forged.post(f"{API}/{conn_id}/delete")
        assert answer.status_code in (401, 403), (authorization, answer.text)
    assert _session_exists(whatsinfinity_emulator, session)


def test_changes_from_another_site_are_refused_whoever_signs_in(airflow_server, whatsinfinity_emulator):
    session, conn_id = _session_on_emulator(whatsinfinity_emulator, airflow_server)
    cross_site = {"Sec-Fetch-Site": "cross-site", CSRF_HEADER: CSRF_HEADER_VALUE}
    with airflow_server.client("admin") as admin:
        refused = admin.post(f"{API}/{conn_id}/delete", headers=cross_site)
    with _by_cookie(airflow_server, "admin", **cross_site) as browser:
        refused_by_cookie = browser.post(f"{API}/{conn_id}/delete")
    assert (refused.status_code, refused_by_cookie.status_code) == (403, 403)
    assert "another site" in refused.json()["error"]
    assert _session_exists(whatsinfinity_emulator, session)


def test_a_reader_still_may_not_change_with_the_consoles_header(airflow_server, whatsinfinity_emulator):
    session, conn_id = _session_on_emulator(whatsinfinity_emulator, airflow_server)
    with _by_cookie(airflow_server, "viewer", **{CSRF_HEADER: CSRF_HEADER_VALUE}) as viewer:
        assert viewer.post(f"{API}/{conn_id}/delete").status_code == 403
        assert viewer.get(f"{API}/{conn_id}/qr").status_code == 403
    assert _session_exists(whatsinfinity_emulator, session)


def test_eager_providers_and_teams(tmp_path_factory: pytest.TempPathFactory, whatsinfinity_emulator):
    """
    With ``lazy_discover_providers = False`` the plugin is loaded once, with no import error; with
    ``multi_team`` (3.2+; ignored before) the QR and the body-less actions still work.
    """
    session = f"s{uuid.uuid4().hex[:10]}"
    whatsinfinity_emulator.create_session(session, KEY)
    home = tmp_path_factory.mktemp("airflow-eager-providers")
    with running_api_server(
        home,
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS="False",
        AIRFLOW__CORE__MULTI_TEAM="True",
    ) as (url, _):
        token = httpx.get(f"{url}/auth/token", timeout=30).json()["access_token"]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as admin:
            plugins = admin.get("/api/v2/plugins").json()["plugins"]
            errors = admin.get("/api/v2/plugins/importErrors")
            body = {"connection_id": "wi_teams", "conn_type": "whatsinfinity", "login": session}
            added = admin.post(
                "/api/v2/connections", json={**body, "host": whatsinfinity_emulator.url, "password": KEY}
            )
            assert added.status_code == 201, added.text
            sessions = admin.get(API)
            qr = admin.get(f"{API}/wi_teams/qr")
            created = admin.post(f"{API}/wi_teams/create")
    assert [plugin["name"] for plugin in plugins].count("whatsinfinity_console") == 1
    if errors.status_code == 200:  # Airflow 3.1+ lists plugin import errors
        assert errors.json()["import_errors"] == []
    assert sessions.status_code == 200, sessions.text
    assert (qr.status_code, qr.headers["content-type"]) == (200, "image/png"), qr.text
    assert created.status_code == 409, created.text  # the service's answer: it exists already


def test_a_reader_sees_only_the_connections_they_may_read(airflow_server, whatsinfinity_emulator):
    session = f"s{uuid.uuid4().hex[:10]}"
    whatsinfinity_emulator.create_session(session, KEY, link=True)
    public_id = airflow_server.add_connection(whatsinfinity_emulator.url, session, KEY)
    private_id = f"{PRIVATE_PREFIX}{uuid.uuid4().hex[:8]}"
    body = {"connection_id": private_id, "conn_type": "whatsinfinity", "login": session, "password": KEY}
    with airflow_server.client("admin") as admin:
        assert admin.post("/api/v2/connections", json={**body, "host": whatsinfinity_emulator.url}).is_success
        as_admin = {row["connId"] for row in admin.get(API).json()}
    with airflow_server.client("viewer") as viewer:
        assert viewer.get(f"/api/v2/connections/{private_id}").status_code == 403
        as_viewer = {row["connId"] for row in viewer.get(API).json()}
    assert {public_id, private_id} <= as_admin
    assert public_id in as_viewer
    assert private_id not in as_viewer


def test_a_token_in_the_base_urls_query_is_never_shown(airflow_server, whatsinfinity_emulator):
    session, _ = _session_on_emulator(whatsinfinity_emulator, airflow_server)
    secret = "S3cr3tQueryT0ken"
    conn_id = airflow_server.add_connection(f"{whatsinfinity_emulator.url}/?token={secret}", session, KEY)
    with airflow_server.client("viewer") as viewer:
        listed = viewer.get(API)
    row = {row["connId"]: row for row in listed.json()}[conn_id]
    assert secret not in listed.text
    assert row["baseUrl"] is None or "?" not in row["baseUrl"], row


def test_a_connection_that_cannot_be_read_shows_on_its_own_row(airflow_server, whatsinfinity_emulator):
    _, good_id = _session_on_emulator(whatsinfinity_emulator, airflow_server)
    _, broken_id = _session_on_emulator(whatsinfinity_emulator, airflow_server)
    # As if encrypted with another Fernet key: the password cannot be decrypted.
    database = airflow_server.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with sqlite3.connect(database) as db:
        db.execute(
            "UPDATE connection SET password = ?, is_encrypted = 1 WHERE conn_id = ?",
            ("gAAAAA-not-a-fernet-token", broken_id),
        )
    with airflow_server.client("admin") as admin:
        listed = admin.get(API)
        action = admin.post(f"{API}/{broken_id}/create")
    assert listed.status_code == 200, listed.text
    rows = {row["connId"]: row for row in listed.json()}
    assert rows[good_id]["error"] is None
    assert rows[good_id]["status"] == "active"
    assert rows[broken_id]["error"] == "cannot read the connection from Airflow's database: InvalidToken"
    assert action.status_code == 500
    assert action.json()["error"] == f"Cannot read connection {broken_id!r}: InvalidToken"
    assert "Traceback" not in listed.text + action.text
