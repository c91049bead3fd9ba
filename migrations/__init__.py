"""Alembic environment and versions for the projection database."""
