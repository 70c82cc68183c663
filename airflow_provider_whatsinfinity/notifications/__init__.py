"""Notifiers of the WhatsInfinity provider."""
