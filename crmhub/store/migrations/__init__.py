"""Alembic migrations of the hub database (run through ``crmhub db upgrade``)."""
