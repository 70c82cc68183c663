"""
Media URLs: the http(s) URL WhatsInfinity fetches a file from, signed when the file is in object storage.

WhatsInfinity downloads media itself, so it needs a URL it can reach without Airflow's credentials.
A public http(s) URL is sent as it is; an object-storage location (an ``ObjectStoragePath``, or a URL
such as ``s3://bucket/report.pdf``) is sent as a URL its filesystem signs for a while.

fsspec is imported only when a URL is signed, to keep DAG parsing fast.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow_provider_whatsinfinity._compat import AirflowFailException

#: URL schemes of object stores whose fsspec filesystems can sign URLs. Anything else that is not
#: http(s) is refused before any filesystem is opened (an ``ftp://`` URL must not start a connection).
OBJECT_STORAGE_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oci", "oss"})
#: How long a signed object-storage URL stays valid: long enough for a queued message to be fetched.
SIGNED_URL_EXPIRY = timedelta(hours=24)


def public_url_for(location: Any, expiry: timedelta) -> str:
    """
    Return an http(s) URL for a file: the URL itself, or a signed one for object storage.

    :param location: An http(s) URL, an ``ObjectStoragePath``, or a URL such as ``s3://bucket/key``.
    :param expiry: How long a signed URL stays valid.
    """
    text = str(location)
    is_storage_path = hasattr(location, "fs") and hasattr(location, "path")  # an ObjectStoragePath
    if text.lower().startswith(("http://", "https://")) and not is_storage_path:
        return text
    protocol = text.split("://", 1)[0].lower() if "://" in text else ""
    if not is_storage_path and protocol not in OBJECT_STORAGE_SCHEMES:
        raise AirflowFailException(
            f"url {text[:100]!r} is neither an http(s) URL nor an object-storage location such as "
            f"s3://bucket/key (schemes: {', '.join(sorted(OBJECT_STORAGE_SCHEMES))})"
        )
    try:
        if is_storage_path:  # signed through its own filesystem, with its Airflow connection
            fs, path = location.fs, location.path
        else:
            import fsspec

            fs, path = fsspec.core.url_to_fs(text)
        signed = fs.sign(path, expiration=int(expiry.total_seconds()))
    except NotImplementedError:
        raise AirflowFailException(
            f"The {protocol!r} filesystem cannot sign URLs for {text}: put the file where WhatsInfinity "
            "can fetch it over http(s), or use storage that signs URLs (s3, gs)"
        ) from None
    except (ImportError, ValueError) as error:
        raise AirflowFailException(
            f"Cannot open {text} to sign a URL for it: {error}. Install the filesystem for {protocol!r} "
            "(such as s3fs or gcsfs, or the matching Airflow provider)"
        ) from None
    if not str(signed).lower().startswith(("http://", "https://")):
        raise AirflowFailException(f"Signing {text} gave {signed!r}, which is not an http(s) URL")
    return str(signed)
