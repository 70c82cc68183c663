"""Media URLs: plain http(s), and object-storage locations sent as signed URLs."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import fsspec
import pytest
from airflow.sdk import ObjectStoragePath
from fsspec.implementations.memory import MemoryFileSystem

from airflow_provider_whatsinfinity._compat import AirflowFailException
from airflow_provider_whatsinfinity.operators.whatsinfinity import (
    WhatsInfinitySendMediaOperator,
    public_url_for,
)
from tests.common import PHONE


class SigningFileSystem(MemoryFileSystem):
    """An in-memory object store that signs URLs the way s3 or gcs do, pointing at a test web server."""

    protocol = "signtest"
    root_marker = ""
    base_url = "http://127.0.0.1:9"
    signed: list[tuple[str, int]] = []

    def sign(self, path, expiration=100, **kwargs):
        SigningFileSystem.signed.append((path, expiration))
        return f"{self.base_url}/{path.rsplit('/', 1)[-1]}?X-Expires={expiration}&X-Signature=abc123"


fsspec.register_implementation("signtest", SigningFileSystem, clobber=True)


def test_http_urls_pass_through():
    assert (
        public_url_for("https://files.example.com/a.pdf", timedelta(hours=1))
        == "https://files.example.com/a.pdf"
    )


def test_a_filesystem_that_cannot_sign_fails_clearly(tmp_path):
    with pytest.raises(AirflowFailException, match="'file' filesystem cannot sign URLs"):
        public_url_for(ObjectStoragePath(f"file://{tmp_path}/report.pdf"), timedelta(hours=1))


@pytest.mark.parametrize(
    "url",
    ["/tmp/report.pdf", "file:///tmp/report.pdf", "ftp://files.example.com/a.pdf", "javascript:alert(1)"],
)
def test_anything_else_fails_clearly_before_opening_a_filesystem(url):
    with pytest.raises(
        AirflowFailException, match=r"neither an http\(s\) URL nor an object-storage location"
    ):
        public_url_for(url, timedelta(hours=1))


def test_a_missing_filesystem_package_fails_clearly():
    with pytest.raises(AirflowFailException, match=r"Cannot open oss://b/k\.pdf to sign a URL for it"):
        public_url_for("oss://b/k.pdf", timedelta(hours=1))


@pytest.fixture
def signing_stores(monkeypatch):
    """
    The signing store as Airflow's object storage knows it (as a provider's filesystem would be), and
    as fsspec's "s3" (s3fs is not installed here), so that a plain s3:// URL signs through it too.
    """
    from fsspec.registry import _registry

    try:
        from airflow.sdk.io import fs
    except ImportError:  # Airflow 3.0 keeps the filesystem registry in airflow.io
        import airflow.io as fs  # type: ignore[no-redef,unused-ignore]

    # "s3", a scheme universal_pathlib knows on every Airflow 3 (0.2 gets the path of others wrong).
    monkeypatch.setitem(fs._BUILTIN_SCHEME_TO_FS, "s3", lambda conn_id, options: SigningFileSystem())
    fs._register_filesystems.cache_clear()
    monkeypatch.setitem(_registry, "s3", SigningFileSystem)
    yield
    fs._register_filesystems.cache_clear()


@pytest.mark.whatsinfinity_emulator(fetch_media=True, typing_delay=0.0)
@pytest.mark.parametrize("as_path", [True, False], ids=["ObjectStoragePath", "fsspec-url"])
def test_object_storage_file_is_sent_as_a_signed_url(
    hook, whatsinfinity_emulator, report_server, signing_stores, as_path
):
    from tests.common import KEY, SESSION

    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    folder, base_url = report_server
    content = b"%PDF-1.4 quarterly numbers"
    (folder / "q3.pdf").write_bytes(content)  # what the signed URL serves
    SigningFileSystem.base_url = base_url
    SigningFileSystem.signed.clear()
    location = ObjectStoragePath("s3://reports/q3.pdf") if as_path else "s3://reports/q3.pdf"
    operator = WhatsInfinitySendMediaOperator(
        task_id="send", to=PHONE, url=location, caption="Q3", signed_url_expiry=timedelta(hours=2)
    )
    result = operator.execute({})
    assert isinstance(result, dict)
    [sent] = whatsinfinity_emulator.outbox()
    assert sent["url"] == f"{base_url}/q3.pdf?X-Expires=7200&X-Signature=abc123"
    assert (sent["type"], sent["sha256"]) == ("document", hashlib.sha256(content).hexdigest())
    # The fake store keeps the protocol on the path; s3fs and gcsfs strip it. Either way, one signature.
    assert [(p.split("://")[-1], e) for p, e in SigningFileSystem.signed] == [("reports/q3.pdf", 7200)]
    assert result["message_id"] == sent["messageId"]
