"""Fake model server so real agent CLIs run offline."""
