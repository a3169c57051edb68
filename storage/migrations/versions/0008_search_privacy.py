"""search privacy: spoiler photos stay hidden, and a group's members find only photos from since they came

A photo posted behind a spoiler (Telegram's has_media_spoiler) is marked (images.spoiler), so
/search re-sends it with has_spoiler and hides its description. Photos stored before were not
marked: they stay as they were. chat_members keeps when the bot first saw each person in each
group; /search there finds them only photos posted since. It starts empty: everyone is seen
anew from their next message.

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
    op.create_table("chat_members",
                    sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
                    sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
                    sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint("chat_id", "user_id"))
    op.create_index("ix_chat_members_user", "chat_members", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_chat_members_user", table_name="chat_members")
    op.drop_table("chat_members")
    with op.batch_alter_table("images", table_kwargs=KEEP) as images:
        images.drop_column("spoiler")
