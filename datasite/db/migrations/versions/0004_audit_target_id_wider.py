"""audit_events.target_id holds 600 characters: a budget grant's target is
"<email>/<dataset>" (up to 320 + 1 + 100), which PostgreSQL refused at 64

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.alter_column(
            "target_id", existing_type=sa.String(64), type_=sa.String(600), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.alter_column(
            "target_id", existing_type=sa.String(600), type_=sa.String(64), existing_nullable=False
        )
