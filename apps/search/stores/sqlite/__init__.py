from apps.search.stores.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
