"""Alembic environment: migrations run on the connection :func:`streams.store.db.migrate`
hands over (``config.attributes["connection"]``), never on a URL from alembic.ini, so the
store's configured URL (and its password) stays in one place."""

from __future__ import annotations

from alembic import context

from streams.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
