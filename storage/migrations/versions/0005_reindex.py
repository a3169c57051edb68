"""reindex: photos whose file Telegram no longer has, and the re-index runs at work

After the operator changes CLIP, `clipchat db reindex` fetches each stored photo again
and re-embeds it. A photo Telegram no longer has is marked (images.file_gone) so it is
not asked for again, and each run keeps a heartbeat row (reindex_runs) that every bot
process reads to tell people their older photos are being re-indexed.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


# Should SQLite copy the table to alter it, the copy keeps AUTOINCREMENT (migration 0004).
KEEP = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("images", table_kwargs=KEEP) as images:
        images.add_column(sa.Column("file_gone", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table("reindex_runs",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("embedding_model", sa.String(length=200), nullable=False),
                    sa.Column("chat_id", sa.BigInteger(), nullable=True),
                    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
                    sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint("id"))


def downgrade() -> None:
    op.drop_table("reindex_runs")
    with op.batch_alter_table("images", table_kwargs=KEEP) as images:
        images.drop_column("file_gone")
