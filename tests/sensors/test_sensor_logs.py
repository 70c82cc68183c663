"""What the sensor logs on each poke: status, queueSize and any warning."""

from __future__ import annotations

from airflow_provider_whatsinfinity.sensors.whatsinfinity import WhatsInfinitySessionReadySensor
from tests.common import KEY, PHONE, SESSION, captured_logs


def test_each_poke_logs_status_queue_and_warning(hook, whatsinfinity_emulator):
    whatsinfinity_emulator.create_session(SESSION, KEY)
    hook.send_text(PHONE, "queued while not linked")
    whatsinfinity_emulator.set_warning(SESSION, "This number is active on another device")
    sensor = WhatsInfinitySessionReadySensor(task_id="wait")
    with captured_logs() as logs:  # structlog on Airflow 3.1+, logging on 3.0
        first = sensor.poke({})
        whatsinfinity_emulator.link(SESSION)
        second = sensor.poke({})
    assert (first.is_done, second.is_done) == (False, True)
    lines = [e["event"] for e in logs if "WhatsInfinity session" in e["event"]]
    assert lines == [
        f"WhatsInfinity session '{SESSION}' is qr, not ready, queueSize 1, "
        "warning: This number is active on another device",
        f"WhatsInfinity session '{SESSION}' is active, ready, queueSize 0, "
        "warning: This number is active on another device",
    ]
    assert second.xcom_value is not None
    assert second.xcom_value["warning"] == "This number is active on another device"


def test_provider_is_listed_by_the_airflow_cli():
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    [listing] = [line for line in out.stdout.splitlines() if line.startswith("[{")]
    providers = {p["package_name"]: p for p in json.loads(listing)}
    assert providers["airflow-provider-whatsinfinity"]["version"] == "0.1.0"


def test_deferrable_sensor_honours_soft_fail_on_its_first_check(hook, whatsinfinity_emulator):
    import pytest

    from airflow_provider_whatsinfinity._compat import AirflowFailException, AirflowSkipException

    whatsinfinity_emulator.create_session(SESSION, KEY)
    whatsinfinity_emulator.disable(SESSION)
    for deferrable in (False, True):
        sensor = WhatsInfinitySessionReadySensor(task_id="wait", deferrable=deferrable, soft_fail=True)
        with pytest.raises(AirflowSkipException, match="Skipping"):
            sensor.execute({})
    with pytest.raises(AirflowFailException, match="disabled"):
        WhatsInfinitySessionReadySensor(task_id="wait", deferrable=True).execute({})
