"""forgotten: who asked /forget and when, so that restoring an older backup forgets them again

/forget deleted everything about a person, but `clipchat db restore` of a backup taken before brought
it all back. The table keeps the forgotten id and the time, nothing else about them; the restore
deletes again what the backup holds about each id from before its time. Going back drops it.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("forgotten",
                    sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
                    sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint("user_id", "forgotten_at"))


def downgrade() -> None:
    op.drop_table("forgotten")
