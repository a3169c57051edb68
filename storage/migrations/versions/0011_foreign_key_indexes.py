"""Indexes on the foreign keys that lead none: turns.user_id, turns.image_id, images.sender_id

A /forget deletes a person's photos and turns, and every deleted photo unlinks the turns about it
(ON DELETE SET NULL). Without an index on the column a foreign key matches on, the database reads
the whole table for each row it deletes: 400 /forgets in a group of 4,000 people (40,000 photos,
200,000 turns, SQLite) took 143-167 s, 5-7 s with these (`python -m bench.forgetting 0010 0011`).
Going back drops them; no rows change.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

INDEXES = (("turns", "user_id"), ("turns", "image_id"), ("images", "sender_id"))


def upgrade() -> None:
    for table, column in INDEXES:
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column], unique=False)


def downgrade() -> None:
    for table, column in reversed(INDEXES):
        op.drop_index(op.f(f"ix_{table}_{column}"), table_name=table)
