"""Sensors of the WhatsInfinity provider."""
