"""forum topics: photos and turns remember the topic they were in, and a conversation is per topic

In a forum supergroup a question asked in one topic was answered about the photo the same person
had posted in another, because the bot kept conversations per (chat, user) and never read
Telegram's message_thread_id. images.topic_id and turns.topic_id keep the topic (0: none, a chat
without topics or a forum's General), and the thread indexes gain it. Rows stored before were in
no topic the bot knew of: they get 0, where every chat without topics still is. Going back drops
the columns: a forum's topics then share one conversation per person again, as before.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


# Should SQLite copy a table to alter it, the copy keeps AUTOINCREMENT (migration 0004).
KEEP = {"sqlite_autoincrement": True}
# (table, index, its columns before, its columns with the topic)
INDEXES = (
    ("images", "ix_images_chat_sender_id", ["chat_id", "sender_id", "id"], ["chat_id", "sender_id", "topic_id", "id"]),
    ("turns", "ix_turns_thread", ["chat_id", "user_id", "id"], ["chat_id", "user_id", "topic_id", "id"]),
)


def upgrade() -> None:
    for table, index, _before, after in INDEXES:
        with op.batch_alter_table(table, table_kwargs=KEEP) as batch:
            batch.add_column(sa.Column("topic_id", sa.BigInteger(), nullable=False, server_default="0"))
            batch.drop_index(index)
            batch.create_index(index, after, unique=False)


def downgrade() -> None:
    for table, index, before, _after in INDEXES:
        with op.batch_alter_table(table, table_kwargs=KEEP) as batch:
            batch.drop_index(index)
            batch.create_index(index, before, unique=False)
            batch.drop_column("topic_id")
