"""Helpers shared by the test folders: tiny models, catalogues and bundles, databases, a live server."""
