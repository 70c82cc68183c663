"""The notifier, sync and async, with templated messages and several recipients."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from airflow.sdk import DAG

from airflow_provider_whatsinfinity.exceptions import NotOnWhatsAppError
from airflow_provider_whatsinfinity.notifications.whatsinfinity import (
    DEFAULT_MESSAGE,
    WhatsInfinityNotifier,
    send_whatsinfinity_notification,
)
from tests.common import PHONE, captured_logs
from tests.notifications.conftest import needs_async_notifiers, notify_raises

DAG_ID = "nightly_load"


class FakeTI:
    task_id = "load"
    try_number = 2


def context(**extra):
    dag = DAG(DAG_ID, schedule=None, start_date=datetime(2026, 1, 1))
    return {"dag": dag, "ti": FakeTI(), "run_id": "manual__1", **extra}


def test_sync_notify_renders_the_default_message(hook, linked):
    notifier = WhatsInfinityNotifier(to=PHONE)
    notifier(context(exception=RuntimeError("disk full")))
    [sent] = linked.outbox()
    assert sent["message"] == "Airflow alert: DAG nightly_load, task load (try 2), run manual__1\ndisk full"


def test_default_message_without_a_task_or_exception(hook, linked):
    dag = DAG(DAG_ID, schedule=None, start_date=datetime(2026, 1, 1))
    WhatsInfinityNotifier(to=PHONE)({"dag": dag, "run_id": "scheduled__2", "reason": "task_failure"})
    assert linked.outbox()[0]["message"] == "Airflow alert: DAG nightly_load, run scheduled__2\ntask_failure"
    assert "{%" in DEFAULT_MESSAGE


def test_a_template_naming_the_exception_works_where_the_context_lacks_it(hook, linked):
    # dag.test() on Airflow 3.0 to 3.2 leaves "exception" out of task callbacks; deployed Airflow
    # sets it, None after a success.
    WhatsInfinityNotifier(to=PHONE, message="{{ ti.task_id }} ended: {{ exception }}")(context())
    assert linked.outbox()[0]["message"] == "load ended: None"


def test_a_failing_message_template_still_sends_the_default_alert_saying_why(hook, linked, capsys):
    notifier = WhatsInfinityNotifier(to=PHONE, message="{{ ti.task_id }} failed: {{ details.reason }}")
    notifier(context(exception=RuntimeError("disk full")))
    [sent] = linked.outbox()
    assert sent["message"] == (
        "Airflow alert: DAG nightly_load, task load (try 2), run manual__1\ndisk full\n"
        "(The alert's own message template failed: UndefinedError: 'details' is undefined)"
    )
    assert "The alert's message template failed" in capsys.readouterr().out


def test_custom_template_and_several_recipients(hook, linked):
    notifier = send_whatsinfinity_notification(
        to=[PHONE, "+44 7700 900123"], message="{{ ti.task_id }} of {{ dag.dag_id }} succeeded", typing=True
    )
    notifier(context())
    assert [(m["to"], m["message"]) for m in linked.outbox()] == [
        (PHONE, "load of nightly_load succeeded"),
        ("447700900123", "load of nightly_load succeeded"),
    ]


def test_one_bad_recipient_does_not_stop_the_others(hook, linked):
    linked.mark_unregistered("15550001111")
    notifier = WhatsInfinityNotifier(to=["15550001111", PHONE], message="alert")
    with captured_logs() as logs, notify_raises(NotOnWhatsAppError):
        notifier(context())
    assert [m["to"] for m in linked.outbox()] == [PHONE]
    # The notifier names the alert it could not deliver itself, whatever Airflow does with the error.
    [line, *_] = [e["event"] for e in logs if e["log_level"] == "error"]
    assert line.startswith("WhatsApp alert for DAG nightly_load, task load (try 2), run manual__1 NOT sent")
    assert "NOT sent to 15550001111: " in line
    assert "Number not registered on WhatsApp" in line


@needs_async_notifiers
def test_async_notify(hook, linked):
    notifier = WhatsInfinityNotifier(
        to=[PHONE, "447700900123"], message="deadline missed by {{ dag.dag_id }}"
    )
    notifier.context = context()

    async def run():
        await notifier

    asyncio.run(run())
    assert [(m["to"], m["message"]) for m in linked.outbox()] == [
        (PHONE, "deadline missed by nightly_load"),
        ("447700900123", "deadline missed by nightly_load"),
    ]


def test_async_notify_raises_after_trying_everyone(hook, linked):
    linked.mark_unregistered("15550001111")
    notifier = WhatsInfinityNotifier(to=["15550001111", PHONE], message="alert")
    notifier.context = context()
    with pytest.raises(NotOnWhatsAppError):
        asyncio.run(notifier.async_notify(notifier.context))
    assert [m["to"] for m in linked.outbox()] == [PHONE]


def test_a_reused_notifier_renders_each_alert_afresh(whatsinfinity_emulator, monkeypatch):
    from tests.common import KEY, SESSION, connection_json

    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    whatsinfinity_emulator.create_session("backup", "backup-key-0123456789", link=True)
    monkeypatch.setenv("AIRFLOW_CONN_PRIMARY", connection_json(whatsinfinity_emulator.url))
    monkeypatch.setenv(
        "AIRFLOW_CONN_BACKUP",
        connection_json(whatsinfinity_emulator.url, login="backup", password="backup-key-0123456789"),
    )
    # One notifier object, as a DAG file imported once or a triggerer's deadline alert keeps it.
    notifier = WhatsInfinityNotifier(
        to="{{ oncall }}", message="{{ run_id }} failed", whatsinfinity_conn_id="{{ connection_name }}"
    )
    notifier(context(run_id="run_1", oncall=PHONE, connection_name="primary"))
    notifier(context(run_id="run_2", oncall="447700900123", connection_name="backup"))
    assert [(m["sessionId"], m["to"], m["message"]) for m in whatsinfinity_emulator.outbox()] == [
        (SESSION, PHONE, "run_1 failed"),
        ("backup", "447700900123", "run_2 failed"),
    ]


def test_secrets_the_masker_knows_never_reach_the_phone(hook, linked):
    from airflow_provider_whatsinfinity._compat import mask_secret

    mask_secret("db-password-Sup3rS3cret")
    error = RuntimeError("could not connect to postgres://app:db-password-Sup3rS3cret@db/app")
    WhatsInfinityNotifier(to=PHONE)(context(exception=error))
    [sent] = linked.outbox()
    assert "Sup3rS3cret" not in sent["message"]
    assert "postgres://app:***@db/app" in sent["message"]


def test_a_70000_character_exception_still_sends_the_alert(hook, linked):
    from airflow_provider_whatsinfinity.spec import MAX_MESSAGE_LENGTH, text_length

    WhatsInfinityNotifier(to=PHONE)(context(exception=RuntimeError("x" * 70_000)))
    [sent] = linked.outbox()
    text = sent["message"]
    assert text.startswith("Airflow alert: DAG nightly_load, task load (try 2), run manual__1\nxxx")
    assert text.endswith("... [truncated: 70000 characters]")
    assert text_length(text) <= MAX_MESSAGE_LENGTH
    assert text_length(text) > MAX_MESSAGE_LENGTH - 100  # cut to fit, not far shorter


def test_a_long_exception_is_cut_in_utf16_units(hook, linked):
    from airflow_provider_whatsinfinity.spec import MAX_MESSAGE_LENGTH, text_length

    # 40,000 emoji are 40,000 Python characters but 80,000 UTF-16 code units, as the service counts.
    WhatsInfinityNotifier(to=PHONE)(context(exception=RuntimeError("\N{FIRE}" * 40_000)))
    [sent] = linked.outbox()
    assert sent["message"].endswith("... [truncated: 80000 characters]")
    assert text_length(sent["message"]) <= MAX_MESSAGE_LENGTH


def test_a_users_template_that_renders_too_long_is_cut_as_a_last_resort(hook, linked):
    from airflow_provider_whatsinfinity.spec import MAX_MESSAGE_LENGTH, text_length

    notifier = WhatsInfinityNotifier(to=PHONE, message="{{ run_id }} {{ 'y' * 70000 }}")
    notifier(context())
    [sent] = linked.outbox()
    assert sent["message"].startswith("manual__1 yyy")
    assert sent["message"].endswith("... [message truncated: 70010 characters]")
    assert text_length(sent["message"]) <= MAX_MESSAGE_LENGTH


def test_a_users_template_gets_its_exception_cut_rather_than_its_end(hook, linked):
    notifier = WhatsInfinityNotifier(to=PHONE, message="{{ exception }}\n-- sent by {{ dag.dag_id }}")
    notifier(context(exception=RuntimeError("z" * 70_000)))
    [sent] = linked.outbox()
    assert sent["message"].endswith("... [truncated: 70000 characters]\n-- sent by nightly_load")


def test_secrets_are_masked_before_a_long_exception_is_cut(hook, linked):
    from airflow_provider_whatsinfinity._compat import mask_secret

    secret = "cut-here-Sup3rS3cretPassw0rd"
    mask_secret(secret)
    # The secret straddles the place where the text is cut: cutting first would leave its head.
    head = "Airflow alert: DAG nightly_load, task load (try 2), run manual__1\n"
    filler = "e" * (65_000 - len(head) - len("... [truncated: 70000 characters]") - 10)
    error = RuntimeError(filler + secret + "f" * (70_000 - len(filler) - len(secret)))
    WhatsInfinityNotifier(to=PHONE)(context(exception=error))
    [sent] = linked.outbox()
    assert "cut-here" not in sent["message"]
    assert "Sup3r" not in sent["message"]
    assert "***" in sent["message"]
