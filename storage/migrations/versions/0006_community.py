"""community: operators' allow/ban list, daily usage for budgets, and per-chat index, language and budgets

Operators running the bot for a community limit what each user and group may use per day
(usage), allow or ban people from inside Telegram (user_access, read by every bot process),
and groups choose whether photos nobody addressed are kept for /search (chat_settings.index_photos,
on as before), which language the bot replies in, and their own daily budgets.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chat_settings") as settings:
        settings.add_column(sa.Column("index_photos", sa.Boolean(), nullable=False, server_default=sa.true()))
        settings.add_column(sa.Column("language", sa.String(length=16), nullable=True))
        settings.add_column(sa.Column("daily_photos", sa.Integer(), nullable=True))
        settings.add_column(sa.Column("daily_questions", sa.Integer(), nullable=True))
    op.create_table("user_access",
                    sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
                    sa.Column("status", sa.String(length=8), nullable=False),
                    sa.Column("updated_by", sa.BigInteger(), nullable=True),
                    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint("user_id"))
    op.create_table("usage",
                    sa.Column("scope", sa.String(length=8), nullable=False),
                    sa.Column("subject_id", sa.BigInteger(), autoincrement=False, nullable=False),
                    sa.Column("day", sa.Date(), nullable=False),
                    sa.Column("kind", sa.String(length=16), nullable=False),
                    sa.Column("count", sa.Integer(), nullable=False),
                    sa.Column("told", sa.Boolean(), nullable=False, server_default=sa.false()),
                    sa.PrimaryKeyConstraint("scope", "subject_id", "day", "kind"))


def downgrade() -> None:
    op.drop_table("usage")
    op.drop_table("user_access")
    with op.batch_alter_table("chat_settings") as settings:
        settings.drop_column("daily_questions")
        settings.drop_column("daily_photos")
        settings.drop_column("language")
        settings.drop_column("index_photos")
