"""web sessions, sign-in attempts and lockouts; pilot adjudications; the devices a worker has

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("username", sa.String(120), nullable=False, index=True),
        sa.Column("method", sa.String(20), nullable=False),
        sa.Column("user_agent", sa.String(400), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("last_seen", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("revoked_at", TZ),
        sa.Column("revoked_by", sa.String(120)),
    )
    op.create_table(
        "sign_in_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(120), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String(60), nullable=False),
        sa.Column("ts", TZ, nullable=False),
    )
    op.create_index("ix_sign_in_user_ts", "sign_in_attempts", ["username", "ts"])
    op.create_index("ix_sign_in_address_ts", "sign_in_attempts", ["address", "ts"])
    op.create_table(
        "lockouts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("subject", sa.String(120), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("locked_at", TZ, nullable=False),
        sa.UniqueConstraint("kind", "subject", name="uq_lockout"),
    )
    op.create_table(
        "pilot_adjudications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pilot_id", sa.Integer, sa.ForeignKey("pilots.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("sample_id", sa.String(40), nullable=False),
        sa.Column("label", sa.String(20), nullable=False),
        sa.Column("settled_by", sa.String(120), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("settled_at", TZ, nullable=False),
        sa.UniqueConstraint("pilot_id", "sample_id", name="uq_pilot_adjudication"),
    )
    with op.batch_alter_table("workers") as batch:  # batch: SQLite cannot ALTER in place
        batch.add_column(sa.Column("devices", sa.String(200)))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("devices")
    for table in ("pilot_adjudications", "lockouts", "sign_in_attempts", "web_sessions"):
        op.drop_table(table)
