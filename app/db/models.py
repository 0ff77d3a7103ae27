"""The catalogue schema: one row per item, plus a one-row table saying which catalogue is loaded.

The Alembic revision in ``migrations/versions`` creates exactly these tables; a test compares the two.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, DateTime, Integer, MetaData, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names, so migrations can name what they drop on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ITEM_ID_MAX = 255
SEMANTIC_ID_MAX = 255
VERSION_MAX = 128

JsonDocument = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Item(Base):
    """A catalogue item. ``semantic_id`` is the compact form ("12-7-33-0") of ``codes``; its unique
    index is what makes every code tuple unique."""

    __tablename__ = "items"

    item_id: Mapped[str] = mapped_column(String(ITEM_ID_MAX), primary_key=True)
    semantic_id: Mapped[str] = mapped_column(String(SEMANTIC_ID_MAX), unique=True, index=True)
    codes: Mapped[list[int]] = mapped_column(JSON)
    title: Mapped[str] = mapped_column(Text)
    fields: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    catalogue_version: Mapped[str] = mapped_column(String(VERSION_MAX))


class CatalogueState(Base):
    """Which catalogue the items table holds: the bundle manifest's ``catalogue.content_hash``."""

    __tablename__ = "catalogue_state"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[str] = mapped_column(String(VERSION_MAX))
    item_count: Mapped[int] = mapped_column(Integer)
    loaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


CATALOGUE_STATE_ID = 1
