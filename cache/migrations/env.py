"""Alembic's environment: migrations run on the connection cache/schema.py hands in, so
SQLite and PostgreSQL take the same steps and no URL or password is read here."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
