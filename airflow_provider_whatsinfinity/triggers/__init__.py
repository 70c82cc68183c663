"""Triggers of the WhatsInfinity provider."""
