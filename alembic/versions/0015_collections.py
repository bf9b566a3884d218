"""Collections and access: every document in one collection (those from before in `default`), external
ids unique per collection, access groups on documents, keys bound to collections (`*` for the keys
from before: nothing they did breaks) and carrying groups, decisions kept with the key that made them

Revision ID: 0015_collections
Revises: 0014_conversations
Create Date: 2026-12-08
"""

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision = "0015_collections"
down_revision = "0014_conversations"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
DEFAULT = "default"

# The documents table on SQLite, before and after this revision (rebuilt: SQLite cannot drop the old
# UNIQUE (external_id) in place).
_DOCUMENT_COLUMNS = (
    "id VARCHAR(32) NOT NULL, {collection}external_id VARCHAR(512), title TEXT DEFAULT '' NOT NULL, "
    "source_url TEXT, content_type VARCHAR(100) NOT NULL, checksum VARCHAR(64) NOT NULL, "
    "language VARCHAR(8) NOT NULL, taxonomy_path TEXT DEFAULT '' NOT NULL, metadata JSON NOT NULL, "
    "chunk_count INTEGER DEFAULT '0' NOT NULL, token_count INTEGER DEFAULT '0' NOT NULL, "
    "created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, {restricted}PRIMARY KEY (id), {unique}"
)
_OLD_DOCUMENTS = _DOCUMENT_COLUMNS.format(collection="", restricted="", unique="UNIQUE (external_id)")
_NEW_DOCUMENTS = _DOCUMENT_COLUMNS.format(
    collection="collection_id INTEGER NOT NULL REFERENCES collections (id), ",
    restricted="restricted BOOLEAN DEFAULT 0 NOT NULL, ",
    unique="CONSTRAINT uq_documents_collection_external_id UNIQUE (collection_id, external_id)")
_SHARED = ("id, external_id, title, source_url, content_type, checksum, language, taxonomy_path, metadata, "
           "chunk_count, token_count, created_at, updated_at")
_DOCUMENT_INDEXES = ("CREATE INDEX ix_documents_checksum ON documents (checksum)",
                     "CREATE INDEX ix_documents_language ON documents (language)",
                     "CREATE INDEX ix_documents_taxonomy_path ON documents (taxonomy_path)")


def _vec_ddl(dim: int, collections: bool) -> list[str]:
    """The SQLite vec0 mirror of `embeddings` for one dimension: with the collection as a partition key and
    the restricted flag (this revision; as `apps.search.stores.sqlite.vector_index.ddl` makes it), or as
    0004_sqlite_vec made it."""
    t, d = f"vec_embeddings_{int(dim)}", int(dim)
    if not collections:
        copy = f"INSERT INTO {t}(chunk_id, model, embedding) SELECT {{row}}.chunk_id, {{row}}.model, {{row}}.vector"
        return [
            f"CREATE VIRTUAL TABLE {t} USING vec0("
            f"chunk_id integer primary key, model text partition key, embedding float[{d}] distance_metric=cosine)",
            f"CREATE TRIGGER {t}_ai AFTER INSERT ON embeddings WHEN new.dim = {d} BEGIN "
            + copy.format(row="new") + "; END",
            f"CREATE TRIGGER {t}_ad AFTER DELETE ON embeddings WHEN old.dim = {d} BEGIN "
            f"DELETE FROM {t} WHERE chunk_id = old.chunk_id; END",
            f"CREATE TRIGGER {t}_au AFTER UPDATE ON embeddings BEGIN DELETE FROM {t} WHERE chunk_id = old.chunk_id; "
            + copy.format(row="new") + f" WHERE new.dim = {d}; END",
            copy.format(row="e") + f" FROM embeddings e WHERE e.dim = {d}",
        ]
    copy = (f"INSERT INTO {t}(chunk_id, model, collection_id, restricted, embedding) "
            "SELECT {row}.chunk_id, {row}.model, d.collection_id, d.restricted, {row}.vector "
            "FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = {row}.chunk_id")
    return [
        f"CREATE VIRTUAL TABLE {t} USING vec0(chunk_id integer primary key, model text partition key, "
        f"collection_id integer partition key, restricted integer, embedding float[{d}] distance_metric=cosine)",
        f"CREATE TRIGGER {t}_ai AFTER INSERT ON embeddings WHEN new.dim = {d} BEGIN "
        + copy.format(row="new") + "; END",
        f"CREATE TRIGGER {t}_ad AFTER DELETE ON embeddings WHEN old.dim = {d} BEGIN "
        f"DELETE FROM {t} WHERE chunk_id = old.chunk_id; END",
        f"CREATE TRIGGER {t}_au AFTER UPDATE ON embeddings BEGIN "
        f"DELETE FROM {t} WHERE chunk_id = old.chunk_id; " + copy.format(row="new") + f" AND new.dim = {d}; END",
        f"CREATE TRIGGER {t}_restricted AFTER UPDATE OF restricted ON documents "
        f"WHEN old.restricted IS NOT new.restricted BEGIN "
        f"DELETE FROM {t} WHERE chunk_id IN (SELECT id FROM chunks WHERE document_id = new.id); "
        f"INSERT INTO {t}(chunk_id, model, collection_id, restricted, embedding) "
        "SELECT e.chunk_id, e.model, new.collection_id, new.restricted, e.vector FROM embeddings e "
        f"JOIN chunks c ON c.id = e.chunk_id WHERE c.document_id = new.id AND e.dim = {d}; END",
        f"INSERT INTO {t}(chunk_id, model, collection_id, restricted, embedding) "
        "SELECT e.chunk_id, e.model, d.collection_id, d.restricted, e.vector FROM embeddings e "
        f"JOIN chunks c ON c.id = e.chunk_id JOIN documents d ON d.id = c.document_id WHERE e.dim = {d}",
    ]


def _vec_dims() -> list[int]:
    names = op.get_bind().execute(sa.text(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%USING vec0%'"
    )).scalars().all()
    return [int(n.rsplit("_", 1)[1]) for n in names if n.startswith("vec_embeddings_")]


def _drop_vec(dim: int) -> None:
    for suffix in ("ai", "ad", "au", "restricted"):
        op.execute(f"DROP TRIGGER IF EXISTS vec_embeddings_{dim}_{suffix}")
    op.execute(f"DROP TABLE IF EXISTS vec_embeddings_{dim}")


def _sqlite_without_foreign_keys(work: Callable[[], None]) -> None:
    """Run `work` with SQLite's foreign keys off: rebuilding `documents` drops the old table, and with them on
    that drop would delete every chunk by cascade. The pragma is a no-op inside a transaction, so the
    revision's (empty so far) transaction is ended and a new one holds all of its work, committed with the
    version stamp; the rest of this connection's run keeps them off (its engine is disposed after)."""
    bind = op.get_bind()
    bind.exec_driver_sql("COMMIT")
    bind.exec_driver_sql("PRAGMA foreign_keys=OFF")
    bind.exec_driver_sql("BEGIN IMMEDIATE")
    work()
    broken = bind.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"the rebuilt schema breaks {len(broken)} foreign key(s), e.g. {broken[0]}")


def _rebuild_documents(columns: str, select: str) -> None:
    op.execute(f"CREATE TABLE documents_rebuilt ({columns})")
    op.execute(select)
    op.execute("DROP TABLE documents")
    op.execute("ALTER TABLE documents_rebuilt RENAME TO documents")
    for statement in _DOCUMENT_INDEXES:
        op.execute(statement)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_without_foreign_keys(_upgrade)
    else:
        _upgrade()


def _upgrade() -> None:
    bind = op.get_bind()
    pg = bind.dialect.name == "postgresql"
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    bind.execute(sa.text("INSERT INTO collections (name, description, created_at) VALUES "
                         "(:name, 'every document from before collections', CURRENT_TIMESTAMP)"), {"name": DEFAULT})
    default_id = bind.execute(sa.text("SELECT id FROM collections WHERE name = :name"), {"name": DEFAULT}).scalar_one()
    if pg:
        op.add_column("documents", sa.Column("collection_id", sa.Integer(), nullable=True))
        bind.execute(sa.text("UPDATE documents SET collection_id = :id"), {"id": default_id})
        op.alter_column("documents", "collection_id", nullable=False)
        op.create_foreign_key("documents_collection_id_fkey", "documents", "collections", ["collection_id"], ["id"])
        op.add_column("documents", sa.Column("restricted", sa.Boolean(), nullable=False, server_default=sa.false()))
        op.drop_constraint("documents_external_id_key", "documents", type_="unique")
        op.create_unique_constraint("uq_documents_collection_external_id", "documents", ["collection_id", "external_id"])
    else:
        dims = _vec_dims()
        for dim in dims:
            _drop_vec(dim)
        _rebuild_documents(_NEW_DOCUMENTS, f"INSERT INTO documents_rebuilt ({_SHARED}, collection_id, restricted) "
                                           f"SELECT {_SHARED}, {int(default_id)}, 0 FROM documents")
        for dim in dims:
            for statement in _vec_ddl(dim, collections=True):
                op.execute(statement)
    op.create_index("ix_documents_collection_id", "documents", ["collection_id"])
    # Whether any document carries groups is one lookup: a groupless corpus is searched without the check.
    op.create_index("ix_documents_restricted", "documents", ["id"], postgresql_where=sa.text("restricted"),
                    sqlite_where=sa.text("restricted = 1"))
    op.create_table(
        "document_groups",
        sa.Column("document_id", sa.String(32), sa.ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(100), primary_key=True),
    )
    # Keys from before see every collection and carry no groups: what they saw, they still see.
    op.add_column("api_keys", sa.Column("collections", _JSON, nullable=False, server_default=sa.text("'[\"*\"]'")))
    op.add_column("api_keys", sa.Column("groups", _JSON, nullable=False, server_default=sa.text("'[]'")))
    op.add_column("bandit_decisions", sa.Column("key_id", sa.String(32), nullable=True))
    op.add_column("bandit_decisions", sa.Column("collections", _JSON, nullable=True))


def downgrade() -> None:
    bind = op.get_bind()
    count = bind.execute(sa.text("SELECT count(*) FROM collections")).scalar_one()
    if count > 1:
        raise RuntimeError(f"refusing to downgrade below 0015_collections: {count} collections exist, and the "
                           "schema before it has one corpus (documents of different collections could share an "
                           "external id, keys bound to one would see all). Delete every collection but "
                           f"'{DEFAULT}' first (DELETE /api/v1/collections/NAME?cascade=true)")
    grouped = bind.execute(sa.text("SELECT count(DISTINCT document_id) FROM document_groups")).scalar_one()
    if grouped:
        raise RuntimeError(f"refusing to downgrade below 0015_collections: {grouped} document(s) carry access "
                           "groups, and the schema before it would show them to every key. Delete them first")
    if bind.dialect.name == "sqlite":
        _sqlite_without_foreign_keys(_downgrade)
    else:
        _downgrade()


def _downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.drop_column("bandit_decisions", "collections")
    op.drop_column("bandit_decisions", "key_id")
    op.drop_column("api_keys", "groups")
    op.drop_column("api_keys", "collections")
    op.drop_table("document_groups")
    op.drop_index("ix_documents_restricted", table_name="documents")
    op.drop_index("ix_documents_collection_id", table_name="documents")
    if pg:
        op.drop_constraint("uq_documents_collection_external_id", "documents", type_="unique")
        op.create_unique_constraint("documents_external_id_key", "documents", ["external_id"])
        op.drop_column("documents", "restricted")
        op.drop_constraint("documents_collection_id_fkey", "documents", type_="foreignkey")
        op.drop_column("documents", "collection_id")
    else:
        dims = _vec_dims()
        for dim in dims:
            _drop_vec(dim)
        _rebuild_documents(_OLD_DOCUMENTS, f"INSERT INTO documents_rebuilt ({_SHARED}) SELECT {_SHARED} FROM documents")
        for dim in dims:
            for statement in _vec_ddl(dim, collections=False):
                op.execute(statement)
    op.drop_table("collections")
