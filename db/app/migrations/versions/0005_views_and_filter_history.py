"""saved views (a page and its query string, by name); every save of a filter kept, with who saved it

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


def downgrade() -> None:
    op.drop_column("filters", "updated_by")
    op.drop_table("filter_history")
    op.drop_table("saved_views")
