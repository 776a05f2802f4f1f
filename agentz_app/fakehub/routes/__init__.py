"""The fake GitHub's route handlers, one module per resource; each ``register``s its routes."""
