"""Apache Airflow provider for WhatsInfinity: WhatsApp messages and media from DAGs."""

from __future__ import annotations

__version__ = "0.1.0"
