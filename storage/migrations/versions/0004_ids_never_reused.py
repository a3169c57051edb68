"""ids never reused: AUTOINCREMENT for images and turns on SQLite

Without it SQLite hands the id of a deleted newest row to the next insert, and
the search index, which notices changes by (row count, newest id), kept a
forgotten person's vector under someone else's new photo. PostgreSQL's
sequences never reuse an id, so there is nothing to do there.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("images", "turns")


def _recreate(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        # SQLite cannot alter a table's id: copy it into a new table (foreign keys are off while migrating)
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass


def upgrade() -> None:
    _recreate(True)


def downgrade() -> None:
    _recreate(False)
