"""The example DAGs, run with dag.test() against the emulator: exactly the expected messages, none twice."""

from __future__ import annotations

import hashlib
import io
from collections import Counter

import pytest

from airflow_provider_whatsinfinity.triggers.whatsinfinity import WhatsInfinitySessionReadyTrigger
from tests.common import KEY, PHONE, SESSION, connection_json, decode_qr
from tests.dags.conftest import (
    EXAMPLE_DAGS,
    EXAMPLE_SESSIONS,
    dag_bag,
    example_module,
    load_example,
    phone_links,
    task_states,
)

EXAMPLES = sorted(p.stem for p in EXAMPLE_DAGS.glob("example_*.py"))


def test_every_example_parses_without_import_errors():
    bag = dag_bag(EXAMPLE_DAGS)
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == sorted(EXAMPLES)
    assert len(EXAMPLES) == 6
    for dag in bag.dags.values():
        assert "whatsinfinity_conn_id" in dag.params
        if dag.dag_id == "example_whatsinfinity_many_sessions":
            assert dag.params["whatsinfinity_conn_id"] == list(EXAMPLE_SESSIONS)
        else:
            assert dag.params["whatsinfinity_conn_id"] == "whatsinfinity_default"
        assert "example" in dag.tags


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_hold_no_secrets(name):
    source = (EXAMPLE_DAGS / f"{name}.py").read_text()
    for secret in ("password", "api_key", "apiKey", "your-session-api-key", KEY):
        assert secret not in source


@pytest.mark.whatsinfinity_emulator(fetch_media=True, typing_delay=0.0, connect_delay=0.2)
def test_daily_report_sends_the_pdf_to_every_recipient_once(airflow_env, report_server):
    folder, base_url = report_server
    recipients = ["919999999999", "447700900123", "15550109999"]
    conf = {"recipients": recipients, "report_dir": str(folder), "report_base_url": base_url}
    run = load_example("example_whatsinfinity_daily_report").test(run_conf=conf)
    assert str(run.state) == "success", task_states(run)
    [pdf] = folder.glob("daily-report-*.pdf")
    content = pdf.read_bytes()
    assert content.startswith(b"%PDF-1.4")
    assert content.rstrip().endswith(b"%%EOF")
    outbox = airflow_env.outbox()
    assert [m["to"] for m in outbox] == recipients
    for message in outbox:
        assert message["type"] == "document"
        assert message["url"] == f"{base_url}/{pdf.name}"
        assert message["fileName"] == pdf.name
        assert message["caption"].startswith("Daily report for ")
        assert (message["size"], message["sha256"]) == (len(content), hashlib.sha256(content).hexdigest())
    [ti] = [t for t in run.get_task_instances() if t.task_id == "send_report"]
    sent = ti.xcom_pull(task_ids="send_report")
    assert [r["message_id"] for r in sent] == [m["messageId"] for m in outbox]


@pytest.mark.whatsinfinity_emulator(fetch_media=True, typing_delay=0.0)
def test_sensor_gated_send_waits_in_the_trigger(
    airflow_db, whatsinfinity_emulator, monkeypatch, report_server
):
    folder, base_url = report_server
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(whatsinfinity_emulator.url))
    whatsinfinity_emulator.create_session(SESSION, KEY)  # showing its QR, not linked
    runs = []
    original_run = WhatsInfinitySessionReadyTrigger.run

    def counting_run(self):
        runs.append(self.serialize())
        return original_run(self)

    monkeypatch.setattr(WhatsInfinitySessionReadyTrigger, "run", counting_run)
    conf = {"recipient": PHONE, "report_dir": str(folder), "report_base_url": base_url}
    # The phone links once two checks have found the session unlinked: the sensor's own check, then
    # the trigger's first. Only the trigger can see it ready.
    checks_path = f"/check-session/{SESSION}"
    with phone_links(whatsinfinity_emulator, checks_path, answered=2) as linked:
        run = load_example("example_whatsinfinity_sensor_gated").test(run_conf=conf)
    assert linked.is_set()
    assert str(run.state) == "success", task_states(run)
    assert len(runs) == 1  # the sensor deferred, and the trigger ended the wait
    assert runs[0][1]["poke_interval"] == 1.0
    text, chart = whatsinfinity_emulator.outbox()
    assert (text["type"], text["to"]) == ("text", PHONE)
    assert text["message"].startswith(f"Session {SESSION} is ready.")
    assert (chart["type"], chart["caption"]) == ("image", "Orders this week")
    [png] = folder.glob("*.png")
    assert chart["sha256"] == hashlib.sha256(png.read_bytes()).hexdigest()
    checks = whatsinfinity_emulator.requests(checks_path)
    assert len(checks) >= 3  # unlinked (sensor), unlinked (trigger), ready (trigger)


def test_failure_alert_names_the_task_and_the_error(airflow_env, exception_in_failure_context):
    run = load_example("example_whatsinfinity_failure_alerts").test(
        run_conf={"oncall": [PHONE, "447700900123"]}
    )
    assert task_states(run) == {"load_partner_feed": "failed", "record_outcome": "success"}
    outbox = airflow_env.outbox()
    assert [m["to"] for m in outbox] == [PHONE, "447700900123"]
    if exception_in_failure_context:
        error = "Partner feed answered HTTP 503 three times; giving up"
    else:
        # dag.test() on this Airflow (3.0 to 3.2) gives the failure callback no exception: the alert
        # still goes out, naming the task, DAG and run, and points at the log instead.
        error = "See the task log for the error."
    for message in outbox:
        assert message["message"] == (
            "Airflow: load_partner_feed failed in example_whatsinfinity_failure_alerts "
            f"(run {run.run_id}, try 1).\n{error}"
        )


@pytest.mark.parametrize("link_with", ["qr", "pairing_code"])
def test_onboarding_creates_links_and_welcomes(
    airflow_db, whatsinfinity_emulator, monkeypatch, tmp_path, link_with
):

    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(whatsinfinity_emulator.url))
    qr_path = tmp_path / "qr" / "session.png"
    conf = {"link_with": link_with, "qr_path": str(qr_path), "welcome_to": PHONE}
    # The phone links once it has what the DAG showed it: the QR, or the pairing code.
    shown = f"/qr/{SESSION}" if link_with == "qr" else "/pairing-code"
    with phone_links(whatsinfinity_emulator, shown) as linked:
        run = load_example("example_whatsinfinity_onboarding").test(run_conf=conf)
    assert linked.is_set()
    states = task_states(run)
    assert str(run.state) == "success", states
    assert states["create_session"] == states["wait_until_linked"] == states["send_welcome"] == "success"
    if link_with == "qr":
        assert (states["write_qr"], states["request_pairing_code"]) == ("success", "skipped")
        assert decode_qr(qr_path.read_bytes()).startswith("2@")
    else:
        assert (states["write_qr"], states["request_pairing_code"]) == ("skipped", "success")
        assert not qr_path.exists()
    [welcome] = whatsinfinity_emulator.outbox()
    assert welcome["message"].startswith("Hello from Airflow")


def test_onboarding_an_existing_linked_session_goes_straight_to_the_welcome(airflow_env, tmp_path):
    run = load_example("example_whatsinfinity_onboarding").test(
        run_conf={"qr_path": str(tmp_path / "qr.png")}
    )
    states = task_states(run)
    assert (states["write_qr"], states["request_pairing_code"], states["send_welcome"]) == (
        "skipped",
        "skipped",
        "success",
    )
    assert len(airflow_env.outbox()) == 1


def test_many_sessions_sends_the_report_once_each_way_each_chunk_through_its_session(example_sessions):
    # Seven: the sessions' chunks differ in size (3, 2, 2).
    recipients = [f"9198765432{n:02d}" for n in range(7)]
    run = load_example("example_whatsinfinity_many_sessions").test(run_conf={"recipients": recipients})
    assert str(run.state) == "success", task_states(run)
    tis = run.get_task_instances()
    assert {(ti.task_id, ti.map_index): str(ti.state) for ti in tis} == {
        ("recipients", -1): "success",
        ("send_over_sessions", -1): "success",
        ("split_per_session", -1): "success",
        **{("send_per_session", n): "success" for n in range(len(EXAMPLE_SESSIONS))},
    }
    mapped = sorted((ti for ti in tis if ti.task_id == "send_per_session"), key=lambda ti: ti.map_index)
    assert [ti.rendered_map_index for ti in mapped] == list(EXAMPLE_SESSIONS)
    chunks = {conn_id: recipients[n :: len(EXAMPLE_SESSIONS)] for n, conn_id in enumerate(EXAMPLE_SESSIONS)}

    outbox = example_sessions.outbox()
    day = run.run_after.strftime("%Y-%m-%d")
    assert all(m["message"].startswith(f"Stock report for {day}: ") for m in outbox)
    one_task = "\n(One task over every session.)"
    per_session = "\n(This session's own mapped task.)"
    assert Counter(m["to"] for m in outbox if m["message"].endswith(one_task)) == Counter(recipients)
    assert Counter(m["to"] for m in outbox if m["message"].endswith(per_session)) == Counter(recipients)
    assert len(outbox) == 2 * len(recipients)
    for conn_id, (session_id, _) in EXAMPLE_SESSIONS.items():
        sent = example_sessions.outbox(session_id)
        assert [m["to"] for m in sent if m["message"].endswith(per_session)] == chunks[conn_id]
        # The one task spread the list the same way, its sessions sending concurrently.
        assert sorted(m["to"] for m in sent if m["message"].endswith(one_task)) == sorted(chunks[conn_id])
    assert example_sessions.outbox(SESSION) == []

    [one] = [ti for ti in tis if ti.task_id == "send_over_sessions"]
    results = one.xcom_pull(task_ids="send_over_sessions")
    assert [r["to"] for r in results] == recipients
    assert {r["to"]: r["whatsinfinity_conn_id"] for r in results} == {
        number: conn_id for conn_id, chunk in chunks.items() for number in chunk
    }
    assert not any("reassigned_from" in r for r in results)
    assert one.xcom_pull(task_ids="send_over_sessions", key="failed_sessions") is None


def test_no_xcom_holds_the_api_key(airflow_env, report_server):
    folder, base_url = report_server
    conf = {"report_dir": str(folder), "report_base_url": base_url}
    run = load_example("example_whatsinfinity_daily_report").test(run_conf=conf)
    for ti in run.get_task_instances():
        assert KEY not in repr(ti.xcom_pull(task_ids=ti.task_id))


def test_example_files_are_real_pdf_and_png():
    import zxingcpp  # noqa: F401 - Pillow comes with the test extras
    from PIL import Image

    build_pdf = example_module("example_whatsinfinity_daily_report").build_pdf
    draw_bar_chart = example_module("example_whatsinfinity_sensor_gated").draw_bar_chart

    pdf = build_pdf("Title (with parens)", ["line one", "ünïcode"])
    assert pdf.startswith(b"%PDF-1.4")
    xref = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    assert pdf[xref:].startswith(b"xref")
    image = Image.open(io.BytesIO(draw_bar_chart([1, 2, 3], width=90, height=40)))
    assert image.size == (90, 40)
    assert image.getpixel((45, 39)) == (0x25, 0xD3, 0x66)
    assert image.getpixel((45, 0)) == (255, 255, 255)
