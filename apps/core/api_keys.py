"""API keys: random secrets shown once, stored as HMAC-SHA256 under SECRET_KEY with a lookup prefix.

A key looks like `dtr_<prefix>_<secret>`. Verification is one indexed lookup by prefix and one HMAC,
fast enough for every request; revocation and expiry are read from the database on every request, so
they take effect at once on every worker.

Besides its scope a key is bound to collections (`*`: every one, the value of keys made before
collections existed and of keys made without a list) and may carry access groups; what it may see
follows from them in `apps.core.visibility.visibility_of`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from apps.core.models import ApiKey, new_id, utcnow
from apps.core.visibility import ALL, COLLECTION_NAME, GROUP_NAME

KEY_PREFIX = "dtr"


class Scope(IntEnum):
    read = 1
    write = 2
    admin = 3


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    scope: Scope
    rate_limit_per_minute: int | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    collections: tuple[str, ...] = (ALL,)
    groups: tuple[str, ...] = ()

    @property
    def sees_every_group(self) -> bool:
        """Admin keys read documents whatever their access groups (collections still bind them)."""
        return self.scope >= Scope.admin

    @property
    def active(self) -> bool:
        now = utcnow()
        return self.revoked_at is None and (self.expires_at is None or _aware(self.expires_at) > now)


def _aware(moment: datetime) -> datetime:
    # SQLite returns naive datetimes; everything stored is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(
        row.id, row.name, Scope[row.scope], row.rate_limit_per_minute, row.created_at,
        row.expires_at, row.revoked_at, tuple(row.collections or (ALL,)), tuple(row.groups or ()),
    )


def checked_bindings(collections: Sequence[str] | None, groups: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """A new key's collections (default `*`) and groups, normalised; ValueError names a bad one."""
    names = sorted({c.strip() for c in (collections or [ALL]) if c.strip()}) or [ALL]
    if ALL in names:
        names = [ALL]
    for name in names:
        if name != ALL and not COLLECTION_NAME.match(name):
            raise ValueError(f"collection name {name!r} must be 1-64 of a-z, 0-9, '_', '.', '-' (starting with a "
                             "letter or digit), or '*' for every collection")
    found = sorted({g.strip() for g in (groups or []) if g.strip()})
    for group in found:
        if not GROUP_NAME.match(group):
            raise ValueError(f"group name {group!r} must be 1-100 of letters, digits, '_', '.', ':', '@', '-'")
    return names, found


class ApiKeyStore:
    def __init__(self, engine: AsyncEngine, secret_key: str) -> None:
        self._engine = engine
        self._secret = secret_key.encode()

    def _digest(self, key: str) -> str:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()

    async def create(
        self,
        scope: Scope,
        name: str = "",
        expires_in: timedelta | None = None,
        rate_limit_per_minute: int | None = None,
        collections: Sequence[str] | None = None,
        groups: Sequence[str] | None = None,
    ) -> tuple[KeyInfo, str]:
        """Returns the stored key and its plaintext, which exists only in this return value. `collections`
        None is every collection (`*`); ValueError for a malformed collection or group name."""
        bound, carried = checked_bindings(collections, groups)
        prefix = secrets.token_hex(4)
        plaintext = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        row = ApiKey(
            id=new_id(), name=name, prefix=prefix, key_hash=self._digest(plaintext), scope=scope.name,
            rate_limit_per_minute=rate_limit_per_minute, created_at=utcnow(),
            expires_at=utcnow() + expires_in if expires_in else None, collections=bound, groups=carried,
        )
        async with AsyncSession(self._engine, expire_on_commit=False) as session:
            session.add(row)
            await session.commit()
        return _info(row), plaintext

    async def verify(self, plaintext: str) -> KeyInfo | None:
        """The active key for this plaintext, or None (unknown, wrong secret, revoked or expired)."""
        parts = plaintext.split("_", 2)
        if len(parts) != 3 or parts[0] != KEY_PREFIX:
            return None
        async with AsyncSession(self._engine) as session:
            row = (await session.execute(select(ApiKey).where(ApiKey.prefix == parts[1]))).scalar_one_or_none()
        if row is None or not hmac.compare_digest(row.key_hash, self._digest(plaintext)):
            return None
        info = _info(row)
        return info if info.active else None

    async def list(self) -> list[KeyInfo]:
        async with AsyncSession(self._engine) as session:
            rows = (await session.execute(select(ApiKey).order_by(ApiKey.created_at))).scalars().all()
        return [_info(r) for r in rows]

    async def revoke(self, key_id: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
            )
            if result.rowcount:
                return True
            exists = (await conn.execute(select(ApiKey.id).where(ApiKey.id == key_id))).first()
        return exists is not None  # revoking twice is fine; an unknown id is not

    async def count_active_admins(self) -> int:
        return sum(1 for k in await self.list() if k.scope is Scope.admin and k.active)
