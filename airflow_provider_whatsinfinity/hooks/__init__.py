"""Hooks of the WhatsInfinity provider."""
