"""Alembic environment: runs on the connection `storage.database.upgrade` hands over,
or on sqlalchemy.url when driven by the alembic command line."""

from alembic import context
from sqlalchemy import create_engine

from storage.models import Base

config = context.config


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = config.get_main_option("sqlalchemy.url").replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")
    with create_engine(url).connect() as sync_connection:
        run(sync_connection)
