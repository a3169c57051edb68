"""pending_updates: each user's queue of updates, shared by every bot process on this database

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("pending_updates",
                    sa.Column("user_key", sa.BigInteger(), autoincrement=False, nullable=False),
                    sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
                    sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint("user_key", "update_id"))


def downgrade() -> None:
    op.drop_table("pending_updates")
