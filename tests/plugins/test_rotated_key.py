"""Saving a rotated key: tried again while the failure may pass, never lost to one locked database."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_whatsinfinity.plugins import sessions_api


@pytest.fixture
def saves(monkeypatch):
    """Record the keys written, failing the first ``failures[0]`` writes with ``failures[1]``."""
    written: list[tuple[str, str]] = []
    plan: dict[str, object] = {"failures": 0, "error": RuntimeError("database is locked")}

    def save_key(conn_id: str, api_key: str) -> None:
        if plan["failures"]:
            plan["failures"] = int(plan["failures"]) - 1  # type: ignore[call-overload]
            raise plan["error"]  # type: ignore[misc]
        written.append((conn_id, api_key))

    monkeypatch.setattr(sessions_api, "_save_key", save_key)
    monkeypatch.setattr(sessions_api, "SAVE_KEY_FIRST_DELAY", 0.01)
    return written, plan


def test_a_passing_failure_is_tried_again_until_the_key_is_saved(saves):
    written, plan = saves
    plan["failures"] = sessions_api.SAVE_KEY_ATTEMPTS - 1
    asyncio.run(sessions_api._save_rotated_key("wi_a", "new-key-0123456789"))
    assert written == [("wi_a", "new-key-0123456789")]


def test_a_lasting_failure_is_raised_after_the_last_try(saves):
    written, plan = saves
    plan["failures"] = sessions_api.SAVE_KEY_ATTEMPTS
    with pytest.raises(RuntimeError, match="locked"):
        asyncio.run(sessions_api._save_rotated_key("wi_a", "new-key-0123456789"))
    assert written == []
    assert plan["failures"] == 0  # every try was made


def test_a_deleted_connection_is_not_tried_again(saves):
    _, plan = saves
    plan["failures"], plan["error"] = 2, LookupError("connection 'wi_a' is gone")
    with pytest.raises(LookupError):
        asyncio.run(sessions_api._save_rotated_key("wi_a", "new-key-0123456789"))
    assert plan["failures"] == 1
