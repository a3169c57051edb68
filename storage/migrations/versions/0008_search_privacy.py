"""search privacy: spoiler photos stay hidden when /search sends them back

A photo posted behind a spoiler (Telegram's has_media_spoiler) is marked (images.spoiler), so
/search re-sends it with has_spoiler and hides its description. Photos stored before were not
marked: they stay as they were.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


# Should SQLite copy the table to alter it, the copy keeps AUTOINCREMENT (migration 0004).
KEEP = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("images", table_kwargs=KEEP) as images:
        images.add_column(sa.Column("spoiler", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("images", table_kwargs=KEEP) as images:
        images.drop_column("spoiler")
