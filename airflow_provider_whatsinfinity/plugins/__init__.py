"""Airflow plugins shipped by the provider: the sessions console (``console``)."""
