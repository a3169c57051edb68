"""Connecting, sessions, migrations and retried writes.

SQLite by default (a file in the user's data directory, WAL mode, no server);
PostgreSQL when DATABASE_URL says so. Migrations are Alembic's and run at start-up.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import CursorResult, Result, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from clipchat.errors import StorageDown
from clipchat.metrics import STAGE_SECONDS

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection
from clipchat.retrying import retrying

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 5.0  # any one database wait; a write retries within WRITE_DEADLINE_S in all
WRITE_DEADLINE_S = 20.0
MIGRATION_LOCK = 0x636C6970  # "clip": the advisory lock key migrations run under on PostgreSQL


def default_database_url() -> str:
    import platformdirs

    folder = Path(platformdirs.user_data_dir("clipchat"))
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{folder / 'clipchat.db'}"


def normalize_url(url: str) -> str:
    """Accept the URLs operators paste (postgres://, postgresql://, sqlite:///) and pick the async drivers."""
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def connect_database(url: str | None = None, *, timeout: float = DEFAULT_TIMEOUT_S, **kwargs: Any) -> AsyncEngine:
    """The database at `url` (SQLAlchemy's engine: connections open on first use), every wait bounded by
    `timeout` seconds: connecting, waiting for a pooled connection, and (SQLite) waiting for the writer's
    lock. A dead server fails fast instead of holding a user's queue for asyncpg's default minute per
    attempt. Statements themselves are not cut short: migrations (behind an advisory lock), the purge and
    ANALYZE may rightly run long."""
    url = normalize_url(url or default_database_url())
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": timeout}, **kwargs)
        event.listen(engine.sync_engine, "connect", partial(_sqlite_pragmas, busy_ms=int(timeout * 1000)))
        return engine
    connect_args = {"timeout": timeout} if url.startswith("postgresql+asyncpg") else {}
    # pre_ping replaces connections that died with a database restart before they are used
    return create_async_engine(url, pool_pre_ping=True, pool_timeout=timeout, connect_args=connect_args, **kwargs)


def _sqlite_pragmas(connection: Any, _record: object, busy_ms: int) -> None:  # a DBAPI connection
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    cursor.execute("PRAGMA foreign_keys=ON")  # cascades delete a user's images and turns
    cursor.execute(f"PRAGMA busy_timeout={busy_ms:d}")  # writers queue instead of failing at once
    cursor.close()


def changed_rows(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed. `AsyncSession.execute` is typed as returning a plain
    `Result`, but for those statements it returns the `CursorResult` that counts them."""
    return cast(CursorResult[Any], result).rowcount or 0


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    if url:
        config.set_main_option("sqlalchemy.url", normalize_url(url))
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply Alembic migrations up to `revision` on `engine`'s database."""
    await _migrate(engine, "upgrade", revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Undo migrations down to `revision` ("base": an empty database); the rows of older tables stay."""
    await _migrate(engine, "downgrade", revision)


async def _migrate(engine: AsyncEngine, direction: str, revision: str) -> None:
    from alembic import command

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        getattr(command, direction)(config, revision)

    if engine.dialect.name != "sqlite":
        async with engine.begin() as connection:
            if engine.dialect.name == "postgresql":  # several bot processes may start at once: one migrates
                await connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            await connection.run_sync(run)
        return
    # SQLite alters a table by copying it and dropping the old one; with foreign keys on, that
    # drop cascades (turns lost the photo they were about when 0002 was undone). Alembic's advice:
    # foreign keys off around the migration (the pragma only works outside a transaction), then checked.
    async with engine.connect() as connection:
        await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        await connection.commit()
        try:
            async with connection.begin():
                await connection.run_sync(run)
                broken = (await connection.exec_driver_sql("PRAGMA foreign_key_check")).all()
                if broken:
                    raise RuntimeError(f"migration to {revision} left rows pointing at nothing: {broken[:5]}")
        finally:
            # The connection goes back to the pool: with foreign keys off there, cascades would
            # silently stop, so a connection that cannot be shown to have them on is thrown away.
            try:
                await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                enforced = (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar()
                await connection.commit()
            except BaseException:
                await connection.invalidate()
                raise
            if enforced != 1:
                await connection.invalidate()


async def open_database(url: str | None = None) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    """What the application's start-up hook calls: engine, migrations applied, one sessionmaker."""
    engine = connect_database(url)
    await upgrade(engine)
    return engine, make_sessionmaker(engine)


async def write_with_retry(
    sessions: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Awaitable[T]],
    attempts: int = 8,
    first_delay: float = 0.1,
    deadline: float = WRITE_DEADLINE_S,
) -> T:
    """Run `work` in a fresh session and commit; retry when the database went away or is busy.

    A restart drops every pooled connection; the next attempt gets a new one, so
    the user's turn is written late rather than lost. No retry starts after `deadline`
    seconds: a database that stays down (or full) fails the write with StorageDown (a transaction, so
    nothing half-written).
    """
    with STAGE_SECONDS.labels("database").time(), storage_down():  # retries included: the wait the caller saw
        async for attempt in retrying(
            is_transient,
            attempts=attempts,
            first_delay=first_delay,
            max_delay=2.0,
            deadline=deadline,
            what="database write",
        ):
            with attempt:
                async with sessions() as session:
                    result = await work(session)
                    await session.commit()
    return result


def is_transient(error: BaseException) -> bool:
    """A lost connection, a restarting server, a locked SQLite file or a wait that timed out: worth
    another try, and, when the tries run out, worth telling the user to come back later."""
    if is_full(error):  # space does not come back within a retry's wait: say so at once
        return False
    if isinstance(error, DBAPIError):
        return error.connection_invalidated or isinstance(error, OperationalError) or _is_connection_error(error)
    # SQLAlchemy's pool timeout; asyncpg's connect and command timeouts arrive as TimeoutError
    return isinstance(error, ConnectionError | OSError | TimeoutError | SQLAlchemyTimeout)


def is_full(error: BaseException) -> bool:
    """The database's disk is full (SQLite's SQLITE_FULL, PostgreSQL's disk_full, ENOSPC)."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    original = getattr(error, "orig", None)
    return isinstance(error, DBAPIError) and (
        "database or disk is full" in str(error) or "DiskFull" in type(original).__name__
    )


def unavailable(error: BaseException) -> bool:
    """The database cannot serve this now (down, timed out, full): the user should come back later.

    Only for an error raised by a database call: an OSError or a timeout reads as the database's here.
    Outside storage, StorageDown (raised by `storage_down`, `write_with_retry` and `reading`) says it."""
    return isinstance(error, StorageDown) or is_transient(error) or is_full(error)


@contextlib.contextmanager
def storage_down() -> Iterator[None]:
    """The boundary of the storage layer: a database that cannot serve (`unavailable`) leaves as StorageDown,
    so that callers never take an OSError or a timeout from elsewhere for the database's."""
    try:
        yield
    except StorageDown:
        raise
    except Exception as error:
        if not unavailable(error):
            raise
        raise StorageDown(detail=f"{type(error).__name__}: {error}") from error


@contextlib.asynccontextmanager
async def reading(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for reads, whose unavailable database leaves as StorageDown (`storage_down`)."""
    with storage_down():
        async with sessions() as session:
            yield session


def _is_connection_error(error: DBAPIError) -> bool:
    original = getattr(error, "orig", None)
    name = type(original).__name__ if original is not None else ""
    return any(word in name for word in ("Connection", "Interface", "AdminShutdown", "CannotConnectNow"))
