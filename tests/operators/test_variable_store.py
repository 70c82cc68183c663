"""
VariableStore, the delivery record's home on Airflow 3.0 to 3.2, against an API server that misbehaves.

The DAG tests (tests/dags) run it for real on those versions; here the Task SDK's Variable calls are
replaced by a small in-memory API server, so that it can answer "not found" for a Variable it holds
(what Airflow's server does when a secrets backend or the Fernet key fails) or report a task state.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from airflow_provider_whatsinfinity import delivery
from airflow_provider_whatsinfinity._compat import AirflowException
from airflow_provider_whatsinfinity.delivery import DeliveryRecord, PlannedSend, VariableStore

SEND = PlannedSend("919999999999", 1, (0,))


class Server:
    """The API server's Variables, and what it says of the task instance's state."""

    def __init__(self) -> None:
        self.variables: dict[str, str] = {}
        self.writes: list[str] = []
        self.reads_fail = False  # answers "not found" for every Variable, as a failing backend does
        self.state = "success"

    def read(self, key: str) -> str | None:
        return None if self.reads_fail else self.variables.get(key)

    def write(self, key: str, value: str, description: str) -> None:
        assert description
        self.writes.append(key)
        self.variables[key] = value

    def delete(self, key: str) -> None:
        self.variables.pop(key, None)


@pytest.fixture
def server(monkeypatch) -> Server:
    api = Server()
    monkeypatch.setattr(delivery, "read_task_variable", api.read)
    monkeypatch.setattr(delivery, "write_task_variable", api.write)
    monkeypatch.setattr(delivery, "delete_task_variable", api.delete)
    monkeypatch.setattr(delivery, "task_instance_state", lambda ti: api.state)
    return api


def store(try_number: int = 1, map_index: int = -1) -> VariableStore:
    return VariableStore("dag", "send", "manual__1", map_index, try_number=try_number)


def test_one_variable_per_task_instance_holds_the_record_and_goes_when_empty(server):
    first, mapped = store(), store(map_index=0)
    assert first.name != mapped.name
    assert first.name.startswith("whatsinfinity_delivery_")
    assert len(first.name) <= 250
    record = DeliveryRecord(first, run_stamp=1)
    record.mark_pending(SEND)
    assert json.loads(server.variables[first.name]) == {
        DeliveryRecord.KEY: {"sends": {SEND.digits: {"state": "pending"}}}
    }
    assert DeliveryRecord(store(try_number=2), run_stamp=1).state(SEND) == "pending"  # what a retry sees
    record.forget(SEND)
    assert first.name not in server.variables  # nothing left to remember: no Variable left behind


def test_a_retry_that_finds_no_record_checks_the_server_can_read_one_back(server):
    assert store(try_number=1).get(DeliveryRecord.KEY) is None
    assert server.writes == []  # a first try has nothing to find: no check
    assert store(try_number=2).get(DeliveryRecord.KEY) is None
    [probe] = server.writes
    assert probe.endswith("_probe")
    assert probe not in server.variables  # written, read back, deleted


def test_a_retry_whose_record_the_server_cannot_read_sends_nothing(server):
    record = DeliveryRecord(store(), run_stamp=1)
    record.mark_pending(SEND)
    record.mark_sent(SEND, {"to": SEND.digits})
    server.reads_fail = True  # the record is there, but the server answers "not found"
    with pytest.raises(AirflowException, match=r"cannot read back a Variable just written"):
        DeliveryRecord(store(try_number=2), run_stamp=1)
    server.reads_fail = False
    assert DeliveryRecord(store(try_number=3), run_stamp=1).state(SEND) == "sent"  # kept all along


def test_the_record_is_deleted_only_once_the_server_has_the_task_as_success(server):
    ti = SimpleNamespace(dag_id="dag", task_id="send", run_id="manual__1", map_index=-1)
    record = DeliveryRecord(store(), run_stamp=1)
    record.mark_pending(SEND)
    record.mark_sent(SEND, {"to": SEND.digits})
    record.complete()
    [name] = server.variables
    server.state = "running"  # reporting the success failed (Airflow 3.2 still runs the callback)
    record.discard({"ti": ti})  # type: ignore[arg-type]
    assert name in server.variables
    server.state = "success"
    record.discard({"ti": ti})  # type: ignore[arg-type]
    assert server.variables == {}
