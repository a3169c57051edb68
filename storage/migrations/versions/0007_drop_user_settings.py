"""user_settings goes: the product never wrote it

Each person's language comes from Telegram with every update and each chat's choices live in
chat_settings, so the table only ever held rows somebody put there by hand, and /forget had to
delete them. Going back recreates it empty, as 0001 made it.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("user_settings")


def downgrade() -> None:
    op.create_table("user_settings",
                    sa.Column("user_id", sa.BigInteger(), nullable=False),
                    sa.Column("preferences", sa.JSON(), nullable=False),
                    sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
                    sa.PrimaryKeyConstraint("user_id"))
