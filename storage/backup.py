"""`clipchat db backup PATH` and `clipchat db restore PATH`: the database copied while the bot runs, and put back.

SQLite: the online backup API (sqlite3's `Connection.backup`) copies one consistent snapshot, the
committed pages still in the WAL included, while the bot goes on writing (in WAL mode a reader never
blocks the writer). The copy is written beside PATH and renamed into place once checked, so a failed
backup never leaves half a file under PATH.

PostgreSQL: `pg_dump --format=custom`, put back by `pg_restore --clean --if-exists --no-owner` in one
transaction (a restore that fails changes nothing). The password reaches them in PGPASSWORD, never on
a command line (`ps` shows those) and never in what this prints.

A backup holds every stored conversation, so it is readable by its owner only: the file is 0600 from its
creation, whatever the process's umask, and the directories clipchat creates for it are 0700 (those that
already exist are the operator's and stay as they are).

A restore refuses to overwrite a database that holds rows unless given --force.

A restore does not undo /forget: each one leaves the forgotten id and its time in `forgotten`. The
restore reads the list the database holds before replacing it, migrates the restored copy to this
clipchat's schema, adds the list to the backup's own, and deletes again what the copy holds about each
id from up to its /forget (`lifecycle.forget_again`). SQLite does all of it on a private copy beside
the database, which then replaces the database in one step; PostgreSQL restores in one transaction
and forgets again in the next (clipchat's tables that the backup predates are dropped in the restore's
transaction, before the tables they point at: the migrations make them again). Between the two the
list is saved in `<backup>.forgotten.json` (0600), removed once applied: if the second step fails,
`clipchat db forget-again FILE` (or the same restore again) applies it. A database that cannot be read
(a damaged SQLite file) has no list to give: `--without-forgotten-list` restores over it without one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import shlex
import sqlite3
import subprocess
import tempfile
from collections.abc import Coroutine
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from clipchat.errors import ClipchatError, InvalidConfig, NotFound, OperatorError

from .database import alembic_config, connect_database, make_sessionmaker, normalize_url, upgrade
from .lifecycle import Removed, forget_again, forget_count, forgotten_entries
from .models import Base
from .settings import StorageSettings

PRIVATE_FILE, PRIVATE_DIRECTORY = 0o600, 0o700  # a backup and the directories made for it
TOOL_TIMEOUT_S = 3600.0  # pg_dump / pg_restore: a larger database needs --timeout
# What libpq understands in a URL's query; asyncpg's own options (and its `ssl`, mapped) stay behind
LIBPQ_PARAMETERS = {
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "options",
    "target_session_attrs",
    "connect_timeout",
}
T = TypeVar("T")
CLIENT_HINT = (
    "install the PostgreSQL client tools of the server's major version (Debian/Ubuntu: apt install postgresql-client)"
)


def add_commands(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`db backup` and `db restore`, beside storage's other `db` actions."""
    backup = actions.add_parser(
        "backup",
        help="copy the database to PATH, safe while the bot runs "
        "(SQLite: a database file; PostgreSQL: a pg_dump custom archive)",
    )
    restore = actions.add_parser(
        "restore", help="put a `db backup` copy back into the configured database (stop the bot first)"
    )
    for parser in (backup, restore):
        parser.add_argument("path", type=Path, metavar="PATH")
        parser.add_argument("--url", help="database URL (default: DATABASE_URL, else SQLite in the user data dir)")
        parser.add_argument(
            "--timeout",
            type=float,
            default=TOOL_TIMEOUT_S,
            metavar="SECONDS",
            help=f"PostgreSQL: longest pg_dump or pg_restore may run (default {TOOL_TIMEOUT_S:g})",
        )
    restore.add_argument("--force", action="store_true", help="replace a database that already holds rows")
    restore.add_argument(
        "--without-forgotten-list",
        action="store_true",
        help="do not read the list of /forgets from the database being replaced (one that cannot be read): "
        "the /forgets recorded since the backup are not applied again",
    )
    again = actions.add_parser(
        "forget-again",
        help="apply the /forgets that a PostgreSQL `db restore` which did not finish saved in FILE "
        "(it names FILE); migrates first, and may be run more than once",
    )
    again.add_argument("path", type=Path, metavar="FILE")
    again.add_argument("--url", help="database URL (default: DATABASE_URL, else SQLite in the user data dir)")
    backup.set_defaults(handler=run_backup)
    restore.set_defaults(handler=run_restore)
    again.set_defaults(handler=run_forget_again)


def run_backup(args: argparse.Namespace, _vision_settings: object) -> int:
    settings = StorageSettings()
    url = normalize_url(args.url or settings.url())
    target = args.path.expanduser().resolve()
    if _is_sqlite(url):
        revision = backup_sqlite(_sqlite_file(url), target, settings.database_timeout_s)
        what = f"schema revision {revision}"
    else:
        backup_postgres(url, target, args.timeout, settings.database_timeout_s)
        what = "pg_dump custom format"
    print(f"Backed up {_shown(url)} to {target} ({target.stat().st_size / 2**20:.1f} MB, {what}).")
    return 0


def run_restore(args: argparse.Namespace, _vision_settings: object) -> int:
    settings = StorageSettings()
    url = normalize_url(args.url or settings.url())
    timeout = settings.database_timeout_s
    source = args.path.expanduser().resolve()
    if not source.is_file():
        raise NotFound(detail=f"No backup at {source}.")
    if not args.force:
        holding = _read_live(url, tables_with_rows(url, timeout))
        if holding:
            raise InvalidConfig(
                detail=f"{_shown(url)} already holds data (in {', '.join(holding)}): stop the bot "
                "and add --force to replace it with the backup."
            )
    # read before the database is replaced
    forgotten = [] if args.without_forgotten_list else _read_live(url, forgotten_before_restore(url, timeout))
    if _is_sqlite(url):
        revision, (count, removed) = restore_sqlite(source, _sqlite_file(url), timeout, forgotten)
        what = f" (schema revision {revision})"
    else:
        count, removed = restore_postgres_settled(url, source, args.timeout, timeout, forgotten, args.url is not None)
        what = ""
    print(
        f"Restored {source} into {_shown(url)}{what}, migrated to this clipchat's schema; the {count} "
        f"/forget requests on record applied again: {removed.images} photos and {removed.turns} messages "
        "the backup held about those people deleted."
    )
    return 0


def run_forget_again(args: argparse.Namespace, _vision_settings: object) -> int:
    settings = StorageSettings()
    url = normalize_url(args.url or settings.url())
    saved = args.path.expanduser().resolve()
    forgotten = load_forgotten(saved)
    count, removed = asyncio.run(settle_restored(url, settings.database_timeout_s, forgotten))
    print(
        f"Applied the {len(forgotten)} /forget requests in {saved} again to {_shown(url)}, migrated to this "
        f"clipchat's schema ({count} on record): {removed.images} photos and {removed.turns} messages deleted. "
        f"{saved} can be deleted now."
    )
    return 0


def _read_live(url: str, reading: Coroutine[Any, Any, T]) -> T:
    """What the restore reads of the database it replaces; one that cannot be read (a damaged SQLite
    file, the usual reason to restore) is said in one line, with the way to go on without it."""
    try:
        return asyncio.run(reading)
    except SQLAlchemyError as error:
        reason = getattr(error, "orig", None) or error
        raise OperatorError(
            detail=f"{_shown(url)} cannot be read ({reason}), nor its list of /forgets: to replace it anyway, "
            "add --force --without-forgotten-list (the /forgets recorded since the backup are then not "
            "applied again)."
        ) from None


async def forgotten_before_restore(url: str, timeout: float) -> list[tuple[int, datetime]]:
    """The /forgets the database about to be replaced records (none if it has no such table yet)."""
    if "forgotten" not in await table_names(url, timeout):
        return []
    engine = connect_database(url, timeout=timeout)
    try:
        async with make_sessionmaker(engine)() as session:
            return await forgotten_entries(session)
    finally:
        await engine.dispose()


async def settle_restored(url: str, timeout: float, forgotten: list[tuple[int, datetime]]) -> tuple[int, Removed]:
    """A restored database made current: migrated, and every /forget applied again; returns how many
    /forgets it now records, and what they deleted."""
    engine = connect_database(url, timeout=timeout)
    try:
        await upgrade(engine)
        async with make_sessionmaker(engine)() as session:
            removed = await forget_again(session, forgotten)
            count = await forget_count(session)
            await session.commit()
        return count, removed
    finally:
        await engine.dispose()


# --- SQLite ----------------------------------------------------------------------------------------------------


def backup_sqlite(database: Path, target: Path, timeout: float) -> str:
    """Copy `database` to `target` with the online backup API; returns the copy's schema revision."""
    if not database.is_file():
        raise NotFound(detail=f"No database at {database}: nothing to back up (is DATABASE_URL the bot's?).")
    partial = _private_partial(target)
    try:
        with closing(sqlite3.connect(database, timeout=timeout)) as source, closing(sqlite3.connect(partial)) as copy:
            source.backup(copy)  # one read transaction: a consistent snapshot, WAL included
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            revision = _checked_revision(copy, partial)
        with open(partial, "rb+") as written:  # on disk before it takes PATH's name
            os.fsync(written.fileno())
        os.replace(partial, target)
    except sqlite3.Error as error:
        raise OperatorError(detail=f"Backing up {database} failed: {error}.") from error
    finally:
        partial.unlink(missing_ok=True)
    return revision


def restore_sqlite(
    backup: Path, database: Path, timeout: float, forgotten: list[tuple[int, datetime]]
) -> tuple[str, tuple[int, Removed]]:
    """Copy a `backup_sqlite` file into `database` (created if missing) with the backup API, migrated and
    with every /forget (the backup's and `forgotten`) applied again; returns the backup's revision, and
    `settle_restored`'s answer.

    The work is done on a private copy beside the database, which then replaces it through SQLite, not
    by a file copy: the database's own -wal and -shm files stay coherent with it, and it never holds the
    backup without the /forgets applied again."""
    try:
        with closing(sqlite3.connect(f"{backup.as_uri()}?mode=ro", uri=True)) as source:
            revision = _checked_revision(source, backup)
            _known_revision(revision, backup)
            staging = _private_partial(database)
            try:
                with closing(sqlite3.connect(staging)) as copy:
                    source.backup(copy)
                try:
                    settled = asyncio.run(settle_restored(f"sqlite+aiosqlite:///{staging}", timeout, forgotten))
                except SQLAlchemyError as error:
                    raise OperatorError(
                        detail=f"Restoring {backup} failed in migrating it or applying the /forgets again "
                        f"({_said(getattr(error, 'orig', None) or error)}); {database} was not changed."
                    ) from error
                try:
                    with (
                        closing(sqlite3.connect(staging)) as ready,
                        closing(sqlite3.connect(database, timeout=timeout)) as destination,
                    ):
                        ready.backup(destination)
                except sqlite3.DatabaseError as error:
                    if error.sqlite_errorcode not in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
                        raise
                    _replace_damaged(staging, database)
            finally:
                for path in (staging, Path(f"{staging}-wal"), Path(f"{staging}-shm")):
                    path.unlink(missing_ok=True)
    except sqlite3.Error as error:
        raise OperatorError(detail=f"Restoring {backup} into {database} failed: {error}.") from error
    return revision, settled


def _replace_damaged(ready: Path, database: Path) -> None:
    """A database SQLite cannot write into (not a database, or damaged) replaced by the restored file: its
    -wal and -shm go first, since SQLite would apply that WAL to whatever file takes the name."""
    with open(ready, "rb+") as written:
        os.fsync(written.fileno())
    for stale in (Path(f"{database}-wal"), Path(f"{database}-shm")):
        stale.unlink(missing_ok=True)
    os.replace(ready, database)


def _checked_revision(connection: sqlite3.Connection, path: Path) -> str:
    """The copy's Alembic revision, after SQLite's quick check of its pages."""
    try:
        [verdict] = connection.execute("PRAGMA quick_check").fetchone()
        [revision] = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as error:  # not a database, or not clipchat's
        raise InvalidConfig(detail=f"{path} is not a clipchat SQLite database ({error}).") from error
    if verdict != "ok":
        raise InvalidConfig(detail=f"{path} is damaged: SQLite's quick check says {verdict}.")
    return str(revision)


def _known_revision(revision: str, backup: Path) -> None:
    """A backup from a newer clipchat cannot be migrated by this one: refused before anything is overwritten."""
    from alembic.script import ScriptDirectory

    if revision not in {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}:
        raise InvalidConfig(
            detail=f"{backup} has schema revision {revision}, which this clipchat does not know: "
            "restore it with the clipchat version that made it (or a newer one)."
        )


# --- PostgreSQL ------------------------------------------------------------------------------------------------


def backup_postgres(url: str, target: Path, timeout: float, connect_timeout: float) -> None:
    partial = _private_partial(target)
    conninfo, password = _libpq(url)
    try:
        _run_tool(
            ["pg_dump", "--format=custom", "--file", str(partial), "--dbname", conninfo],
            password,
            timeout,
            connect_timeout,
        )
        os.chmod(partial, PRIVATE_FILE)  # pg_dump truncates the file it is given; had it made its own, still private
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def restore_postgres(
    url: str, backup: Path, timeout: float, connect_timeout: float, stale: frozenset[str] = frozenset()
) -> None:
    """`pg_restore --clean` of `backup`, in one transaction with dropping `stale` (clipchat's tables that the
    backup predates). They go first, since a foreign key of theirs (sent_photos' on images) would stop the
    clean from dropping the table it points at; and in the same transaction, since a restore that fails must
    leave the database as it was, not without them. pg_restore writes the SQL, psql runs it."""
    conninfo, password = _libpq(url)
    quote = '"{}"'.format
    drops = "".join(f"DROP TABLE IF EXISTS {quote(name)} CASCADE;" for name in sorted(stale))
    script = ["pg_restore", "--clean", "--if-exists", "--no-owner", "--file", "-", str(backup)]
    apply = ["psql", "--no-psqlrc", "--quiet", "--single-transaction", "--set", "ON_ERROR_STOP=1"]
    apply += ["--dbname", conninfo, *(["--command", drops] if drops else []), "--file", "-"]
    env = _tool_env(password, connect_timeout)
    # pg_restore's complaints go to a file, not a pipe nobody reads while psql runs (a full pipe would stall it)
    with tempfile.TemporaryFile() as complaints:
        try:
            writer = subprocess.Popen(script, env=env, stdout=subprocess.PIPE, stderr=complaints)
        except FileNotFoundError:
            raise NotFound(detail=f"pg_restore is not installed: {CLIENT_HINT}.") from None
        with writer:
            try:
                done = subprocess.run(
                    apply, env=env, stdin=writer.stdout, capture_output=True, text=True, timeout=timeout
                )
            except FileNotFoundError:
                writer.kill()
                raise NotFound(detail=f"psql is not installed: {CLIENT_HINT}.") from None
            except subprocess.TimeoutExpired:
                writer.kill()
                raise OperatorError(
                    detail=f"the restore ran over {timeout:g} s and was stopped; give it longer with --timeout."
                ) from None
            finally:
                assert writer.stdout is not None
                writer.stdout.close()
            written = writer.wait(timeout=30)
        complaints.seek(0)
        problems = complaints.read().decode(errors="replace")
    # psql first: when it stops on an error, pg_restore dies of the closed pipe, which says nothing of why
    if done.returncode != 0:
        raise OperatorError(detail=f"pg_restore failed: {_reason(done.stderr, done.returncode, password)}")
    if written != 0:
        raise OperatorError(detail=f"pg_restore failed: {_reason(problems, written, password)}")


def restore_postgres_settled(
    url: str,
    backup: Path,
    timeout: float,
    connect_timeout: float,
    forgotten: list[tuple[int, datetime]],
    url_given: bool,
) -> tuple[int, Removed]:
    """`restore_postgres`, then `settle_restored` in a second transaction. Between the two the list of
    /forgets is nowhere but in `<backup>.forgotten.json`, written (0600) before anything is replaced and
    removed once the /forgets are applied again: when the second step fails, that file and
    `clipchat db forget-again` finish the work. A list a restore that did not finish left there is
    added to the database's, so restoring again also finishes it."""
    saved = backup.with_name(backup.name + ".forgotten.json")
    left = saved.exists()
    if left:  # by a restore that did not finish: the database now lacks it
        forgotten = sorted(set(forgotten) | set(load_forgotten(saved)), key=lambda entry: entry[1])
    stale = _clipchat_tables_not_in(url, backup, timeout, connect_timeout)
    save_forgotten(saved, url, forgotten)
    try:
        restore_postgres(url, backup, timeout, connect_timeout, stale)
    except ClipchatError:  # psql failed: its one transaction changed nothing, and the database holds its list
        if not left:
            saved.unlink(missing_ok=True)
        raise
    try:
        settled = asyncio.run(settle_restored(url, connect_timeout, forgotten))
    except (Exception, KeyboardInterrupt) as error:
        command = ["clipchat", "db", "forget-again", str(saved), *(["--url", _shown(url)] if url_given else [])]
        raise OperatorError(
            detail=f"{backup} was restored, but migrating it or applying the /forgets again failed ({_said(error)}); "
            f"the {len(forgotten)} /forgets it must apply are saved in {saved}: once that is fixed, and before "
            f"the bot starts, run {shlex.join(command)}"
        ) from error
    saved.unlink()
    return settled


def _said(error: BaseException) -> str:
    """An error in a few words: a ClipchatError's own, else its kind and first line."""
    if isinstance(error, ClipchatError):
        return error.detail
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def save_forgotten(path: Path, url: str, entries: list[tuple[int, datetime]]) -> None:
    """The list of /forgets in a file readable by its owner only, written whole or not at all."""
    listing = {"database": _shown(url), "forgotten": [[user_id, when.isoformat()] for user_id, when in entries]}
    try:
        partial = _private_partial(path)
        try:
            with open(partial, "w", encoding="utf-8") as written:
                json.dump(listing, written)
                written.flush()
                os.fsync(written.fileno())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    except OSError as error:
        raise OperatorError(
            detail=f"Could not save the list of /forgets to {path} before the restore ({error}): "
            "restore from a copy of the backup in a directory you can write to."
        ) from error


def load_forgotten(path: Path) -> list[tuple[int, datetime]]:
    """A list `save_forgotten` wrote."""
    try:
        listing = json.loads(path.read_text(encoding="utf-8"))
        return [(int(user_id), datetime.fromisoformat(when)) for user_id, when in listing["forgotten"]]
    except FileNotFoundError:
        raise NotFound(detail=f"No list of /forgets at {path}.") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidConfig(detail=f"{path} is not a list of /forgets that `db restore` saved ({error}).") from None


def _clipchat_tables_not_in(url: str, backup: Path, timeout: float, connect_timeout: float) -> frozenset[str]:
    """clipchat's tables that the database has and the backup does not: made by migrations newer than the
    backup, they outlive `pg_restore --clean` (which drops only what the archive holds), and the
    migrations that make them again would fail on finding them."""
    listing = _run_tool(["pg_restore", "--list", str(backup)], None, timeout, connect_timeout)
    archived = {found[1] for found in re.finditer(r"^\d+; \d+ \d+ TABLE \S+ (\S+) ", listing, re.MULTILINE)}
    present = asyncio.run(table_names(url, connect_timeout))
    return frozenset((present & set(Base.metadata.tables)) - archived)


def _libpq(url: str) -> tuple[str, str | None]:
    """A URL libpq reads, without the password (returned apart, for PGPASSWORD)."""
    parsed = make_url(url)
    query = {key: value for key, value in parsed.query.items() if key in LIBPQ_PARAMETERS}
    if "ssl" in parsed.query and "sslmode" not in query:  # asyncpg's name for it
        query["sslmode"] = parsed.query["ssl"]
    plain = URL.create(
        "postgresql",
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=query,
    )
    return plain.render_as_string(hide_password=False), parsed.password


def _tool_env(password: str | None, connect_timeout: float) -> dict[str, str]:
    env = {**os.environ, "PGCONNECT_TIMEOUT": str(max(2, round(connect_timeout)))}
    if password:
        env["PGPASSWORD"] = password
    return env


def _reason(stderr: str, returncode: int, password: str | None) -> str:
    """The line of a client tool's complaint that says what went wrong, the password never in it."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    reason = next(
        (line for line in lines if "error:" in line.lower()), lines[-1] if lines else f"exit status {returncode}"
    )
    return reason.replace(password, "***") if password else reason


def _run_tool(command: list[str], password: str | None, timeout: float, connect_timeout: float) -> str:
    """Run a PostgreSQL client tool; returns what it printed."""
    try:
        done = subprocess.run(
            command, env=_tool_env(password, connect_timeout), capture_output=True, text=True, timeout=timeout
        )
    except FileNotFoundError:
        raise NotFound(detail=f"{command[0]} is not installed: {CLIENT_HINT}.") from None
    except subprocess.TimeoutExpired:
        raise OperatorError(
            detail=f"{command[0]} ran over {timeout:g} s and was stopped; give it longer with --timeout."
        ) from None
    if done.returncode != 0:
        raise OperatorError(detail=f"{command[0]} failed: {_reason(done.stderr, done.returncode, password)}")
    return done.stdout


# --- both ------------------------------------------------------------------------------------------------------


def _private_partial(target: Path) -> Path:
    """An empty file beside `target`, 0600, for the backup to be written into; the directories missing above
    it are created 0700. Modes are set exactly, not left to the umask (which only takes permissions away)."""
    missing = list(itertools.takewhile(lambda folder: not folder.exists(), (target.parent, *target.parent.parents)))
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by someone else: theirs, left as it is
            folder.mkdir(mode=PRIVATE_DIRECTORY)
            os.chmod(folder, PRIVATE_DIRECTORY)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)  # left by a backup that was killed
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE)
    try:
        os.fchmod(descriptor, PRIVATE_FILE)
    finally:
        os.close(descriptor)
    return partial


async def tables_with_rows(url: str, timeout: float) -> list[str]:
    """The database's tables that hold at least one row (the migrations' bookkeeping aside)."""
    from sqlalchemy import text

    if _is_sqlite(url) and not _sqlite_file(url).is_file():
        return []  # checking would create it
    engine = connect_database(url, timeout=timeout)
    try:
        async with engine.connect() as connection:
            holding = []
            for name in sorted(await _names(connection) - {"alembic_version"}):
                quoted = engine.dialect.identifier_preparer.quote(name)
                if (await connection.execute(text(f"SELECT 1 FROM {quoted} LIMIT 1"))).first():
                    holding.append(name)
            return holding
    finally:
        await engine.dispose()


async def table_names(url: str, timeout: float) -> set[str]:
    """The database's tables (none if it is an SQLite file not there yet)."""
    if _is_sqlite(url) and not _sqlite_file(url).is_file():
        return set()  # looking would create it
    engine = connect_database(url, timeout=timeout)
    try:
        async with engine.connect() as connection:
            return await _names(connection)
    finally:
        await engine.dispose()


async def _names(connection: AsyncConnection) -> set[str]:
    from sqlalchemy import inspect

    return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))


def _is_sqlite(url: str) -> bool:
    if url.startswith("sqlite"):
        return True
    if url.startswith("postgresql"):
        return False
    raise InvalidConfig(detail=f"db backup and restore know SQLite and PostgreSQL, not {_shown(url)}.")


def _sqlite_file(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise InvalidConfig(detail=f"{url} is not a database file: nothing to back up or restore.")
    return Path(database).expanduser().resolve()


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
