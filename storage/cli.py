"""`clipchat db upgrade`: apply the database migrations by hand (the bot also does it at start-up);
`db backup` and `db restore` come from backup.py.

`db reindex` needs Telegram and the models, which this package never imports: bot/ops adds it
to the `db` actions returned here.
"""

from __future__ import annotations

import argparse
import asyncio

from . import backup
from .settings import StorageSettings


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Add `db` and its actions; returns the actions, for the layers above to add theirs."""
    db = commands.add_parser("db", help="database maintenance")
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = actions.add_parser("upgrade", help="apply migrations up to the newest (or --revision)")
    upgrade.add_argument("--url", help="database URL (default: DATABASE_URL, else SQLite in the user data dir)")
    upgrade.add_argument("--revision", default="head")
    upgrade.set_defaults(handler=run_upgrade)
    backup.add_commands(actions)
    return actions


def run_upgrade(args: argparse.Namespace, _settings: object) -> int:
    from .database import connect_database, upgrade

    url = args.url or StorageSettings().url()

    async def main() -> None:
        engine = connect_database(url)
        try:
            await upgrade(engine, args.revision)
        finally:
            await engine.dispose()

    asyncio.run(main())
    print(f"Database is at revision {args.revision}: {_without_password(url)}")
    return 0


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
