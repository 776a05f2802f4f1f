"""Durable state: models, migrations and repositories over SQLAlchemy."""
