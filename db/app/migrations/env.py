"""Alembic environment: runs on the connection db.store hands it (no alembic.ini needed)."""
from alembic import context

from db.app.models import Base, owned_by_app

connection = context.config.attributes["connection"]
context.configure(
    connection=connection, target_metadata=Base.metadata, render_as_batch=True, include_name=owned_by_app
)
context.run_migrations()
