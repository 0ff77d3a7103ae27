"""The catalogue database: schema, engine factory, read-side repository, and the bulk loader."""

from app.db.loader import CatalogueLoadError, LoadReport, load_catalogue
from app.db.repository import CatalogueRepository, CatalogueStateRow, ItemNotFound, ItemRow
from app.db.session import DEFAULT_DATABASE_URL, create_db_engine

__all__ = [
    "DEFAULT_DATABASE_URL",
    "CatalogueLoadError",
    "CatalogueRepository",
    "CatalogueStateRow",
    "ItemNotFound",
    "ItemRow",
    "LoadReport",
    "create_db_engine",
    "load_catalogue",
]
