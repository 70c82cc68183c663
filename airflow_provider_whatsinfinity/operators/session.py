"""
The operators that manage a WhatsInfinity session.

They create it, link it (QR code or pairing code), restart it, delete it, and rotate its API key.

The hook and the client are imported only when a task runs, to keep DAG parsing fast.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_whatsinfinity._compat import AirflowFailException
from airflow_provider_whatsinfinity.exceptions import OutcomeUnknownError, WhatsInfinityError
from airflow_provider_whatsinfinity.operators.base import WhatsInfinityBaseOperator
from airflow_provider_whatsinfinity.task_helpers import as_bool, raise_for_task

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from airflow.sdk import Context

#: Longest wait, in seconds, before checking whether a rotate-key whose answer was lost took effect.
ROTATION_SETTLE_MAX = 30.0


class WhatsInfinityRestartSessionOperator(WhatsInfinityBaseOperator):
    """
    Restart the connection's WhatsInfinity session.

    :param wipe: Also forget its link, so that it must be linked again by QR or pairing code. Templated.
    :param whatsinfinity_conn_id: The WhatsInfinity connection to use. Templated.
    :return: The session's status after the restart, as a dict.
    """

    template_fields: Sequence[str] = ("wipe", "whatsinfinity_conn_id")

    def __init__(self, *, wipe: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wipe = wipe

    def run(self, context: Context) -> dict[str, Any]:
        """Restart the session."""
        wipe = as_bool(self.wipe, "wipe")
        status = self.call(lambda: self.hook.restart_session(wipe=wipe))
        self.log.info(
            "Session %s restarted%s: now %s", status.session_id, " and wiped" if wipe else "", status.status
        )
        return dict(status.to_dict())


class WhatsInfinityCreateSessionOperator(WhatsInfinityBaseOperator):
    """
    Create the connection's session (its Session ID and API key) on WhatsInfinity.

    :param ignore_existing: Succeed when the session already exists, returning its status. Templated.
    :param whatsinfinity_conn_id: The WhatsInfinity connection to use. Templated.
    :return: The session's status, as a dict.
    """

    template_fields: Sequence[str] = ("ignore_existing", "whatsinfinity_conn_id")

    def __init__(self, *, ignore_existing: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ignore_existing = ignore_existing

    def run(self, context: Context) -> dict[str, Any]:
        """Create the session."""
        from airflow_provider_whatsinfinity.exceptions import ConflictError

        try:
            status = self.hook.create_session()
        except ConflictError:
            if not as_bool(self.ignore_existing, "ignore_existing"):
                raise AirflowFailException(
                    f"Session of connection {self.whatsinfinity_conn_id!r} already exists; "
                    "pass ignore_existing=True to carry on"
                ) from None
            status = self.call(self.hook.check_session)
            self.log.info("Session %s already exists: %s", status.session_id, status.status)
        except WhatsInfinityError as error:
            raise_for_task(error)
        else:
            self.log.info("Session %s created: %s", status.session_id, status.status)
        return dict(status.to_dict())


class WhatsInfinityPairingCodeOperator(WhatsInfinityBaseOperator):
    """
    Ask for a pairing code, to enter in WhatsApp under Linked Devices; it is logged and returned.

    :param phone_number: The phone's number with country code. Templated.
    :param whatsinfinity_conn_id: The WhatsInfinity connection to use. Templated.
    :return: The pairing code.
    """

    template_fields: Sequence[str] = ("phone_number", "whatsinfinity_conn_id")

    def __init__(self, *, phone_number: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.phone_number = phone_number

    def run(self, context: Context) -> str:
        """Request the pairing code."""
        code: str = self.call(lambda: self.hook.request_pairing_code(self.phone_number))
        self.log.info("Pairing code: %s (WhatsApp > Linked devices > Link with phone number)", code)
        return code


class WhatsInfinityQrCodeOperator(WhatsInfinityBaseOperator):
    """
    Fetch the session's QR code and write it as a PNG file.

    :param output_path: Where to write the PNG; missing folders are created. Templated.
    :param whatsinfinity_conn_id: The WhatsInfinity connection to use. Templated.
    :return: The path written.
    """

    template_fields: Sequence[str] = ("output_path", "whatsinfinity_conn_id")

    def __init__(self, *, output_path: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.output_path = output_path

    def run(self, context: Context) -> str:
        """Write the QR code."""
        png: bytes = self.call(self.hook.get_qr)
        path = Path(self.output_path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        self.log.info(
            "QR code written to %s (%d bytes): scan it in WhatsApp > Linked devices", path, len(png)
        )
        return str(path)


class WhatsInfinityDeleteSessionOperator(WhatsInfinityBaseOperator):
    """
    Delete the connection's session for good.

    :param whatsinfinity_conn_id: The WhatsInfinity connection to use. Templated.
    """

    def run(self, context: Context) -> None:
        """Delete the session."""
        self.call(self.hook.delete_session)
        self.log.info("Session of connection %s deleted", self.whatsinfinity_conn_id)


class WhatsInfinityRotateKeyOperator(WhatsInfinityBaseOperator):
    """
    Rotate the session's API key and hand the new key to ``store_new_key``, and nowhere else.

    The new key never reaches XCom (nothing is returned) or the logs (it is masked). The old key
    stops working at once, so ``store_new_key`` must put the new one where the connection reads it
    from, such as your secrets backend.

    :param store_new_key: Called with the new key and the task context.
    :param whatsinfinity_conn_id: The WhatsInfinity connection to use. Templated.
    """

    def __init__(self, *, store_new_key: Callable[[str, Context], None], **kwargs: Any) -> None:
        kwargs.setdefault("do_xcom_push", False)
        super().__init__(**kwargs)
        if not callable(store_new_key):
            raise TypeError("store_new_key must be a callable taking (new_key, context)")
        self.store_new_key = store_new_key

    def run(self, context: Context) -> None:
        """Rotate the key and store it."""
        try:
            new_key = self.hook.rotate_key()
        except OutcomeUnknownError as error:
            raise AirflowFailException(self._after_lost_rotation(error)) from error
        except WhatsInfinityError as error:
            raise_for_task(error)
        try:
            self.store_new_key(new_key, context)
        except Exception as error:
            raise AirflowFailException(
                "The key was rotated but store_new_key failed; the old key no longer works. "
                f"Recover the new key from the session's owner. Cause: {type(error).__name__}"
            ) from None
        self.log.info("Session key of connection %s rotated and stored", self.whatsinfinity_conn_id)

    def _after_lost_rotation(self, error: OutcomeUnknownError) -> str:
        """
        Find out with the old key whether a rotation whose answer was lost took effect; say what to do.

        Nothing is retried: a second rotate-key after a first one that did take effect would be refused
        (the old key is dead), and one that did not could still race the first.
        """
        from airflow_provider_whatsinfinity.exceptions import AuthenticationError

        conn_id = self.whatsinfinity_conn_id
        lost = f"rotate-key's answer was lost ({error})"
        # A request that timed out may still be on its way or being handled: give it the time it was
        # allowed before asking whether it landed.
        waited = min(self.hook.get_conn().timeout, ROTATION_SETTLE_MAX)
        time.sleep(waited)
        checked = f"as of {datetime.now(timezone.utc):%H:%M:%S} UTC, {waited:g} s after the rotation"
        try:
            status = self.hook.check_session()
        except AuthenticationError:
            return (
                f"{lost}, and {checked} the service refuses the old key of connection {conn_id!r}: it "
                "changed the key and the new one never reached Airflow. The session cannot be used or "
                "managed with any key Airflow has. Ask WhatsInfinity support to reset the session's key "
                "(quote the requestId above), or create a new session under a new session ID and link it "
                "again"
            )
        except WhatsInfinityError as probe:
            return (
                f"{lost}, and checking the old key failed too ({probe}). Run `airflow connections test "
                f"{conn_id}`: if it passes, the key did not change and this task can run again; if it "
                "answers 401, the service changed the key and the new one was lost: ask WhatsInfinity "
                "support to reset it, or create a new session under a new session ID"
            )
        return (
            f"{lost}, but {checked} the old key of connection {conn_id!r} still works (session "
            f"{status.session_id} is {status.status}): the key was not changed and the connection is "
            "untouched. Check once more with `airflow connections test` before you run the task again"
        )
