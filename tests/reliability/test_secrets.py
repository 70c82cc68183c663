"""
The API key never leaks: run every example DAG with a recognizable key, then search every log, XCom,
rendered template, exception, message and the whole metadata database for it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.common import PHONE, SESSION, connection_json
from tests.dags.conftest import load_example, task_states

SECRET = "SECRET-7f3a9c2e-DEADBEEF-KEY"


@pytest.mark.whatsinfinity_emulator(fetch_media=True, typing_delay=0.0, auto_link=0.5)
def test_the_key_appears_nowhere(
    airflow_db, whatsinfinity_emulator, monkeypatch, report_server, capfd, tmp_path
):
    folder, base_url = report_server
    monkeypatch.setenv(
        "AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(whatsinfinity_emulator.url, password=SECRET)
    )
    runs = []
    for name, conf in [
        ("example_whatsinfinity_onboarding", {"qr_path": str(tmp_path / "qr.png"), "welcome_to": PHONE}),
        ("example_whatsinfinity_daily_report", {"report_dir": str(folder), "report_base_url": base_url}),
        ("example_whatsinfinity_sensor_gated", {"report_dir": str(folder), "report_base_url": base_url}),
        ("example_whatsinfinity_failure_alerts", {"oncall": [PHONE]}),
    ]:
        runs.append(load_example(name).test(run_conf=conf))
    assert [str(r.state) for r in runs] == ["success"] * 4, [task_states(r) for r in runs]
    # The failure-alert DAG raised an exception and sent it: both are searched below.
    assert any("Partner feed" in m.get("message", "") for m in whatsinfinity_emulator.outbox())

    haystacks: dict[str, str] = {}
    captured = capfd.readouterr()
    haystacks["stdout and stderr"] = captured.out + captured.err
    assert "DagRun Finished" in haystacks["stdout and stderr"]  # the runs' logs were captured

    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = session.query(XComModel).all()
        rendered = session.query(RenderedTaskInstanceFields).all()
        instances = session.query(TaskInstance).all()
        haystacks["xcom"] = "\n".join(repr(x.value) for x in xcoms)
        haystacks["rendered templates"] = "\n".join(repr(r.rendered_fields) for r in rendered)
        haystacks["task instances"] = "\n".join(repr(vars(t)) for t in instances)
    assert len(xcoms) >= 8
    assert any("send_report" in repr(r.task_id) for r in rendered)

    haystacks["emulator outbox"] = repr(whatsinfinity_emulator.outbox())
    airflow_home = Path(os.environ["AIRFLOW_HOME"])
    for path in airflow_home.rglob("*"):
        if path.is_file():
            haystacks[str(path)] = path.read_bytes().decode("latin-1")  # the SQLite database included

    for where, text in haystacks.items():
        assert SECRET not in text, f"the API key leaked into {where}"
    assert any(p.suffix == ".db" for p in airflow_home.rglob("*"))
    assert SESSION in haystacks["rendered templates"] or SESSION in haystacks["xcom"]
