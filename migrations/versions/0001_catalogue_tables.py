"""Catalogue tables: items and the one-row catalogue_state.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("item_id", sa.String(length=255), nullable=False),
        sa.Column("semantic_id", sa.String(length=255), nullable=False),
        sa.Column("codes", sa.JSON(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("fields", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("catalogue_version", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("item_id", name=op.f("pk_items")),
    )
    op.create_index(op.f("ix_items_semantic_id"), "items", ["semantic_id"], unique=True)
    op.create_table(
        "catalogue_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_catalogue_state_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalogue_state")),
    )


def downgrade() -> None:
    op.drop_table("catalogue_state")
    op.drop_index(op.f("ix_items_semantic_id"), table_name="items")
    op.drop_table("items")
