"""Alembic migrations. Use ``jingtan migrate``; versions are named ``YYYYMMDD_NNNN_slug``."""
