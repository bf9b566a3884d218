from apps.search.stores.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
