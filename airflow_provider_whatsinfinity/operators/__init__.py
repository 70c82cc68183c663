"""Operators of the WhatsInfinity provider."""
