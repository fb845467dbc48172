"""request_runs.duration_seconds may be NULL: the duration of an interrupted run is unknown

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
    with op.batch_alter_table("request_runs") as batch:
        batch.alter_column("duration_seconds", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE request_runs SET duration_seconds = 0 WHERE duration_seconds IS NULL")
    with op.batch_alter_table("request_runs") as batch:
        batch.alter_column("duration_seconds", existing_type=sa.Float(), nullable=False)
