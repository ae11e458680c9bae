"""A persistent latency cache in any SQLAlchemy database, safe for several processes at once.

Entries are keyed by backend name and version, the profile's content hash and the simulated
convolution (the layer's effective shape after the precision model, memory already scaled), so
identical layers and bit widths that map to the same convolution share one entry. The default is
a SQLite file in the user's cache directory (WAL journal, 60 s busy timeout); set
``BREVITAS_AMED_CACHE`` or pass a URL (``postgresql://...``) to share one cache across a cluster.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Mapping

import sqlalchemy as sa

from hw_backends.report import LayerLatency

CACHE_ENV = "BREVITAS_AMED_CACHE"
BUSY_TIMEOUT_MS = 60_000

_metadata = sa.MetaData()
_table = sa.Table(
    "latency", _metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("backend", sa.String(64), nullable=False),
    sa.Column("profile_hash", sa.String(32), nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("result", sa.Text, nullable=False),
)


def default_cache_url() -> str:
    """``$BREVITAS_AMED_CACHE``, else ``sqlite:///$XDG_CACHE_HOME/brevitas-amed/latency.db``."""
    url = os.environ.get(CACHE_ENV)
    if url:
        return url
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return f"sqlite:///{root / 'brevitas-amed' / 'latency.db'}"


def cache_key(namespace: Iterable[str], spec: tuple) -> str:
    """Stable key of one simulated convolution under one backend version and profile."""
    return hashlib.sha256(json.dumps([list(namespace), list(spec)]).encode()).hexdigest()


class LatencyCache:
    """Simulation results stored in a database.

    Args:
        url: A SQLAlchemy database URL; ``None`` for :func:`default_cache_url`. For SQLite the
            parent folder is created.

    Raises:
        ValueError: If the URL cannot be parsed or its database cannot be opened.
    """

    @classmethod
    def from_option(cls, cache: "str | LatencyCache | bool | None") -> "LatencyCache | None":
        """A backend's ``cache`` argument: ``False`` (none), a cache, or a URL (``None``/``True``: default)."""
        if cache is False:
            return None
        if isinstance(cache, LatencyCache):
            return cache
        return cls(None if cache in (None, True) else str(cache))

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_cache_url()
        try:
            parsed = sa.engine.make_url(self.url)
        except sa.exc.ArgumentError as exc:
            raise ValueError(f"latency cache URL {self.url!r} is not a database URL ({exc}); "
                             f"use e.g. sqlite:////path/latency.db or set {CACHE_ENV}") from exc
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(parsed)
        if parsed.get_backend_name() == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._create_table()

    def __repr__(self) -> str:
        return f"LatencyCache({self.engine.url.render_as_string(hide_password=True)!r})"

    def _create_table(self) -> None:
        try:
            _metadata.create_all(self.engine, checkfirst=True)
        except sa.exc.DBAPIError as exc:
            # Another process may have created the table between the check and the create:
            # SQLite says OperationalError, PostgreSQL ProgrammingError (the table exists) or
            # IntegrityError (both creates were in flight at once).
            if not sa.inspect(self.engine).has_table("latency"):
                raise ValueError(f"cannot open latency cache {self.url!r}: {exc.orig}") from exc

    def get_many(self, keys: Iterable[str]) -> dict[str, LayerLatency]:
        """Stored results for the keys that have one."""
        keys = list(keys)
        found: dict[str, LayerLatency] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(keys), 500):
                rows = conn.execute(sa.select(_table.c.key, _table.c.result)
                                    .where(_table.c.key.in_(keys[start:start + 500])))
                found.update((key, LayerLatency(**json.loads(result))) for key, result in rows)
        return found

    def put(self, key: str, backend: str, profile_hash: str, spec: tuple, result: LayerLatency) -> None:
        """Store one result; a concurrent writer's identical entry wins silently."""
        row = {"key": key, "backend": backend, "profile_hash": profile_hash,
               "spec": json.dumps(list(spec)), "result": json.dumps(_as_dict(result))}
        try:
            with self.engine.begin() as conn:
                conn.execute(_table.insert(), row)
        except sa.exc.IntegrityError:
            pass  # same key already written by another process: results are deterministic

    def __len__(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(_table)).scalar_one())


def _as_dict(result: LayerLatency) -> Mapping[str, object]:
    return {"cycles": result.cycles, "stall_cycles": result.stall_cycles,
            "utilization": result.utilization, "mapping_efficiency": result.mapping_efficiency}


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # Switching to WAL fails at once, without SQLite's busy handler, while another connection holds
    # a write lock in rollback mode: two processes opening a new cache file together. Wait it out.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()
