"""training runs with their per-step loss, and evaluation runs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "train_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(120), nullable=False, unique=True),
        sa.Column("job_id", sa.String(64)),
        sa.Column("snapshot", sa.String(120), nullable=False),
        sa.Column("base_model", sa.String(500), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("out_dir", sa.String(1000), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("steps_done", sa.Integer, nullable=False),
        sa.Column("total_steps", sa.Integer),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "train_steps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("train_runs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("epoch", sa.Float, nullable=False),
        sa.Column("loss", sa.Float, nullable=False),
        sa.Column("learning_rate", sa.Float, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.UniqueConstraint("run_id", "step", name="uq_train_step"),
    )
    op.create_table(
        "eval_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(120), nullable=False, unique=True),
        sa.Column("job_id", sa.String(64)),
        sa.Column("snapshot", sa.String(120), nullable=False),
        sa.Column("model", sa.String(500), nullable=False),
        sa.Column("adapter", sa.String(1000)),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("results", sa.JSON, nullable=False),
        sa.Column("baseline", sa.String(120)),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )


def downgrade() -> None:
    for table in ("eval_runs", "train_steps", "train_runs"):
        op.drop_table(table)
