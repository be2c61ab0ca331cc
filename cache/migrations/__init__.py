"""The index's schema, as Alembic migrations (`huiyin db upgrade`; see cache/schema.py)."""
