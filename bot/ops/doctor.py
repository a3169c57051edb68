"""`clipchat doctor`: check configuration, token, database, model cache and device, and say what to fix.

`--alive` is the container health check: the bot's heartbeat job must have run recently.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

from clipchat.errors import ClipchatError
from storage import StorageSettings
from vision.settings import VisionSettings

from ..core import heartbeat
from ..core.settings import BotSettings

OK, WARN, FAIL = "ok", "warn", "fail"
MARKS = {OK: "✓", WARN: "!", FAIL: "✗"}


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def alive(settings: BotSettings, max_age: float = 4 * heartbeat.HEARTBEAT_S) -> Check:
    path = settings.heartbeat_path()
    age = heartbeat.age(path)
    if age is None:
        return Check("heartbeat", FAIL, f"no heartbeat at {path}", "is `clipchat run` running with this state dir?")
    if age > max_age:
        return Check("heartbeat", FAIL, f"last heartbeat {age:.0f} s ago", "the bot is stuck or stopped: see its log")
    return Check("heartbeat", OK, f"last heartbeat {age:.0f} s ago")


def check_token(settings: BotSettings) -> Check:
    try:
        token = settings.bot_token()
    except ClipchatError as error:
        return Check("token", FAIL, error.detail)
    return Check("token", OK, f"well-formed, for bot id {token.split(':')[0]}")  # the id is public


async def check_database(settings: StorageSettings) -> Check:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url

    from storage.database import alembic_config, make_engine

    url = settings.url()
    shown = make_url(url).render_as_string(hide_password=True)
    engine = make_engine(url, timeout=settings.database_timeout_s)
    try:
        async with engine.connect() as connection:
            current = await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
    except Exception as error:  # any driver's failure to connect is the finding itself
        return Check("database", FAIL, f"{shown}: {type(error).__name__}: {str(error).splitlines()[0][:200]}",
                     "is the server up, and DATABASE_URL right?")
    finally:
        await engine.dispose()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if current != head:
        return Check("database", WARN, f"{shown}: schema at {current or 'empty'}, newest is {head}",
                     "the bot migrates at start-up, or run `clipchat db upgrade`")
    return Check("database", OK, f"{shown}: reachable, schema {current} (newest)")


def check_models(settings: VisionSettings) -> Check:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        model_set = settings.model_set()
    except ClipchatError as error:
        return Check("models", FAIL, error.detail)
    missing = []
    for ref in (model_set.language_model, model_set.captioner.location):
        if ref is None:
            continue
        if ref.scheme == "local-dir":
            if not Path(ref.target).exists():
                missing.append(f"{ref} (no such directory)")
            continue
        try:
            snapshot_download(ref.target, cache_dir=settings.hub_cache_dir, local_files_only=True)
        except (LocalEntryNotFoundError, OSError, ValueError):
            missing.append(str(ref))
    if missing:
        return Check("models", WARN, f"set {model_set.name}: not downloaded yet: {', '.join(missing)}",
                     "the bot downloads them at first start; `clipchat prefetch` does it now")
    return Check("models", OK, f"set {model_set.name}: language model and captioner are on disk")


def check_device(settings: VisionSettings) -> Check:
    import torch

    from vision.devices import resolve_device, resolve_dtype

    try:
        device = resolve_device(settings.device)
        dtype = resolve_dtype(settings.dtype, device)
    except ClipchatError as error:
        return Check("device", FAIL, error.detail)
    name = str(dtype).removeprefix("torch.")
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        status = OK if free > 2 * 2**30 else WARN
        return Check("device", status, f"{torch.cuda.get_device_name(device)}, {free / 2**30:.1f} of "
                     f"{total / 2**30:.1f} GiB free, {name}", "" if status == OK else "free GPU memory (2 GiB+)")
    return Check("device", OK, f"CPU, {torch.get_num_threads()} threads, {name}"
                 + ("" if torch.cuda.is_available() or settings.device != "auto" else " (no CUDA GPU seen)"))


def check_disk(settings: VisionSettings) -> Check:
    from vision.pipeline import default_cache_dir

    folder = settings.cache_dir or default_cache_dir()
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free / 2**30
    if free < 3:
        return Check("disk", WARN, f"{free:.1f} GiB free under {probe}", "the default models need about 2 GiB")
    return Check("disk", OK, f"{free:.0f} GiB free under {probe}")


def run_checks(bot: BotSettings, vision: VisionSettings, storage: StorageSettings) -> list[Check]:
    return [check_token(bot), asyncio.run(check_database(storage)), check_models(vision), check_device(vision),
            check_disk(vision)]


def report(checks: list[Check], quiet: bool = False) -> int:
    for check in checks:
        if quiet and check.status == OK:
            continue
        line = f"{MARKS[check.status]} {check.name}: {check.detail}"
        print(line + (f"\n    fix: {check.fix}" if check.fix else ""))
    return 1 if any(check.status == FAIL for check in checks) else 0
