"""saved filters, pilot studies and their labels, snapshots

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "filters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(120), nullable=False, unique=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "pilots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(120), nullable=False, unique=True),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "pilot_samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pilot_id", sa.Integer, sa.ForeignKey("pilots.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("sample_id", sa.String(40), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("task", sa.String(40), nullable=False),
        sa.Column("decile", sa.Integer),
        sa.Column("vis_attn", sa.Float),
        sa.Column("clip_score", sa.Float),
        sa.UniqueConstraint("pilot_id", "sample_id", name="uq_pilot_sample"),
    )
    op.create_table(
        "pilot_labels",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pilot_id", sa.Integer, sa.ForeignKey("pilots.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("sample_id", sa.String(40), nullable=False),
        sa.Column("annotator", sa.String(120), nullable=False),
        sa.Column("label", sa.String(20), nullable=False),
        sa.Column("ungrounded_words", sa.JSON, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("updated_at", TZ, nullable=False),
        sa.UniqueConstraint("pilot_id", "sample_id", "annotator", name="uq_pilot_label"),
    )
    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(120), nullable=False, unique=True),
        sa.Column("filter_name", sa.String(120)),
        sa.Column("filter_config", sa.JSON, nullable=False),
        sa.Column("lake_version", sa.Integer, nullable=False),
        sa.Column("counts", sa.JSON, nullable=False),
        sa.Column("model_ids", sa.JSON, nullable=False),
        sa.Column("prompt_versions", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )


def downgrade() -> None:
    for table in ("snapshots", "pilot_labels", "pilot_samples", "pilots", "filters"):
        op.drop_table(table)
