"""sent_photos: the photos the bot sends (/search results), by the message that shows each

A reply to a photo /search sent back asked about some other photo, because the bot kept no note
of what its own photo messages showed. Going back drops the notes: replies to those messages are
then about the latest photo again, as before.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("sent_photos",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("chat_id", sa.BigInteger(), nullable=False),
                    sa.Column("message_id", sa.BigInteger(), nullable=False),
                    sa.Column("image_id", sa.Integer(), nullable=False),
                    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
                    sa.ForeignKeyConstraint(["chat_id"], ["chats.id"], ondelete="CASCADE"),
                    sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
                    sa.PrimaryKeyConstraint("id"))
    with op.batch_alter_table("sent_photos") as sent:
        sent.create_index("ix_sent_photos_chat_message", ["chat_id", "message_id"], unique=False)
        sent.create_index(sent.f("ix_sent_photos_image_id"), ["image_id"], unique=False)
        sent.create_index(sent.f("ix_sent_photos_sent_at"), ["sent_at"], unique=False)


def downgrade() -> None:
    op.drop_table("sent_photos")
