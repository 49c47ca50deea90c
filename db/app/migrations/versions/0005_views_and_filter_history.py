"""saved views (a page and its query string, by name); every save of a filter kept, with who saved it;
pilot assignments (who labels which sample) and labelling locks

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "saved_views",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(120), nullable=False, unique=True),
        sa.Column("page", sa.String(40), nullable=False),
        sa.Column("query", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "filter_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(120), nullable=False, index=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("saved_by", sa.String(120), nullable=False),
        sa.Column("saved_at", TZ, nullable=False),
    )
    op.add_column("filters", sa.Column("updated_by", sa.String(120)))
    op.create_table(
        "pilot_assignments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pilot_id", sa.Integer, sa.ForeignKey("pilots.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("sample_id", sa.String(40), nullable=False),
        sa.Column("annotator", sa.String(120), nullable=False),
        sa.Column("assigned_at", TZ, nullable=False),
        sa.UniqueConstraint("pilot_id", "sample_id", "annotator", name="uq_pilot_assignment"),
    )
    op.create_table(
        "pilot_locks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pilot_id", sa.Integer, sa.ForeignKey("pilots.id", ondelete="CASCADE"), nullable=False),
        sa.Column("sample_id", sa.String(40), nullable=False),
        sa.Column("annotator", sa.String(120), nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.UniqueConstraint("pilot_id", "sample_id", name="uq_pilot_lock"),
    )


def downgrade() -> None:
    op.drop_table("pilot_locks")
    op.drop_table("pilot_assignments")
    op.drop_column("filters", "updated_by")
    op.drop_table("filter_history")
    op.drop_table("saved_views")
