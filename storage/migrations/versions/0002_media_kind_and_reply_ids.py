"""images remember whether they came as a photo or a file; turns remember the bot's message id

A photo sent back by /search must use the method its file id belongs to (sendPhoto
or sendDocument), and a reply to one of the bot's messages must find the photo
that message was about.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as images:
        images.add_column(sa.Column("media_kind", sa.String(length=16), nullable=False, server_default="photo"))
    with op.batch_alter_table("turns") as turns:
        turns.add_column(sa.Column("message_id", sa.BigInteger(), nullable=True))
    op.create_index("ix_turns_chat_message", "turns", ["chat_id", "message_id"])


def downgrade() -> None:
    op.drop_index("ix_turns_chat_message", table_name="turns")
    with op.batch_alter_table("turns") as turns:
        turns.drop_column("message_id")
    with op.batch_alter_table("images") as images:
        images.drop_column("media_kind")
