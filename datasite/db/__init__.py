"""Metadata persistence: SQLAlchemy models, engine set-up and Alembic migrations."""
