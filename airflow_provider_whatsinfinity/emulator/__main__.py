"""``python -m airflow_provider_whatsinfinity.emulator``: same as ``whatsinfinity-emulator``."""

from airflow_provider_whatsinfinity.emulator.cli import main

main()
