"""Webhook inbox processing: one router module per feature."""
