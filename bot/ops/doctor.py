"""`clipchat doctor`: check configuration, token, database, each model of the set and the device, and say
what to fix.

`--online` also asks Telegram whose token it is (getMe), and an answer server (CLIPCHAT_ANSWER_URL) whether it
answers and lists its model. `--alive` is the container health check:
the bot's heartbeat job must have run recently.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from clipchat.errors import ClipchatError
from storage import StorageSettings
from vision.catalog.settings import VisionSettings

from ..core import heartbeat
from ..core.settings import BotSettings

if TYPE_CHECKING:
    from ..engine.served import AnswerServer

OK, WARN, FAIL = "ok", "warn", "fail"
MARKS = {OK: "✓", WARN: "!", FAIL: "✗"}


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def alive(settings: BotSettings, max_age: float | None = None) -> Check:
    """The running bot's heartbeat is fresh: at most `max_age` s old (default: MISSED_BEATS intervals)."""
    if max_age is None:
        max_age = heartbeat.MISSED_BEATS * settings.heartbeat_s
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

    from storage.database import alembic_config, connect_database

    url = settings.url()
    shown = make_url(url).render_as_string(hide_password=True)
    engine = connect_database(url, timeout=settings.database_timeout_s)
    try:
        async with engine.connect() as connection:
            current = await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
    except Exception as error:  # any driver's failure to connect is the finding itself
        return Check(
            "database",
            FAIL,
            f"{shown}: {type(error).__name__}: {str(error).splitlines()[0][:200]}",
            "is the server up, and DATABASE_URL right?",
        )
    finally:
        await engine.dispose()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if current != head:
        return Check(
            "database",
            WARN,
            f"{shown}: schema at {current or 'empty'}, newest is {head}",
            "the bot migrates at start-up, or run `clipchat db upgrade`",
        )
    return Check("database", OK, f"{shown}: reachable, schema {current} (newest)")


def check_models(settings: VisionSettings) -> list[Check]:
    """The set as a whole, then each of its models: CLIP, language model, captioner, answer model."""
    from vision.catalog.hub import NOT_DOWNLOADED, presence

    try:
        model_set = settings.model_set()
    except ClipchatError as error:
        return [Check("models", FAIL, error.detail)]
    found_all = presence(model_set, settings.hub_cache_dir, settings.allow_random_weights)
    parts = [_model_check(found) for found in found_all]
    worst = FAIL if any(c.status == FAIL for c in parts) else WARN if any(c.status == WARN for c in parts) else OK
    attention = sum(c.status != OK for c in parts)
    summary = (
        f"set {model_set.name}: {len(parts)} models, all ready"
        if worst == OK
        else f"set {model_set.name}: {attention} of {len(parts)} models need attention"
    )
    downloads = any(found.state == NOT_DOWNLOADED for found in found_all)
    fix = "the bot downloads what is missing at first start; `clipchat prefetch` does it now" if downloads else ""
    return [Check("models", worst, summary, fix), *parts]


def check_answer_model(settings: VisionSettings) -> Check | None:
    """What the answer model is, from its config: a language model that reads the caption and tags, or a
    vision-language model that sees the photo; and that its config (and a VLM's processor) load. None: the
    captioner's language model answers, or the set cannot load (`check_models` says why)."""
    from vision.catalog.hub import cached_file, hub_cache_folder
    from vision.models.vlm import answer_kind

    try:
        ref = settings.model_set().answer_model
    except ClipchatError:
        return None
    if ref is None:
        return None
    name = "answer model kind"
    on_hub = ref.scheme == "hf-hub" or (ref.scheme == "name" and not Path(ref.target).exists())  # as transformers
    if on_hub and cached_file(ref.target, "config.json", hub_cache_folder(settings.hub_cache_dir)) is None:
        return Check(name, WARN, f"{ref}: not downloaded yet; its kind is read from its config once it is")
    try:
        kind = answer_kind(ref, settings.hub_cache_dir)
    except ClipchatError as error:
        return Check(name, FAIL, error.detail)
    loads = "its config and processor load" if kind.sees_images else "its config loads"
    return Check(name, OK, f"{ref}: {kind.shown}; {loads}")


def _model_check(found) -> Check:
    from vision.catalog import hub

    name, shown = found.role, f"{found.reference}: "
    if found.state == hub.ON_DISK:
        return Check(name, OK, f"{shown}on disk ({hub.human_size(found.size)})")
    if found.state == hub.NOTHING:
        if name == "clip":  # random weights were allowed on purpose; still worth a line
            return Check(
                name,
                WARN,
                f"{shown}{found.detail}: captions and tags will be noise",
                "unset CLIPCHAT_ALLOW_RANDOM_WEIGHTS unless this is a benchmark",
            )
        return Check(name, OK, f"{shown}{found.detail}")
    if found.state == hub.NOT_DOWNLOADED:
        return Check(name, WARN, f"{shown}not downloaded yet ({found.detail})")  # the fix is on the set's line
    if found.state == hub.MISSING:
        return Check(name, FAIL, f"{shown}{found.detail}", "fix the path in the model set or in its override")
    return Check(name, FAIL, found.detail)  # invalid: the message already names the setting to change


async def check_telegram(settings: BotSettings, timeout_s: float = 10.0) -> Check:
    """`--online`: ask Telegram (or CLIPCHAT_BASE_URL's server) who the token belongs to, within `timeout_s`."""
    from telegram import Bot
    from telegram.error import InvalidToken, TelegramError
    from telegram.request import HTTPXRequest

    try:
        token = settings.bot_token()
    except ClipchatError:
        return Check("telegram", FAIL, "not asked: there is no usable token (see the token check)")
    server = urlparse(settings.base_url).netloc or settings.base_url
    request = HTTPXRequest(
        connect_timeout=timeout_s, read_timeout=timeout_s, write_timeout=timeout_s, pool_timeout=timeout_s
    )
    bot = Bot(token, base_url=settings.base_url, base_file_url=settings.base_file_url, request=request)
    try:
        async with asyncio.timeout(timeout_s):
            async with bot:  # initialising the bot is the getMe call
                username = bot.username
    except InvalidToken:  # its message repeats the token: never print it
        return Check(
            "telegram",
            FAIL,
            f"{server} refused the token (Unauthorized)",
            "it was revoked or mistyped: copy the current one from @BotFather (/mybots > API Token)",
        )
    except (TimeoutError, TelegramError) as error:
        reason = (
            f"no answer within {timeout_s:g} s"
            if isinstance(error, TimeoutError)
            else f"{type(error).__name__}: {error.message}".replace(token, "<token>")
        )
        return Check("telegram", FAIL, f"{server}: {reason}", "is this machine online, and CLIPCHAT_BASE_URL right?")
    return Check("telegram", OK, f"{server} knows the token: the bot is @{username}")


def check_answer_server(settings: BotSettings, online: bool, timeout_s: float = 10.0) -> Check | None:
    """The model server for open questions, if one is set: the settings fit together, and `online`, that it
    answers /models and lists the model named. None: no answer server (the in-process answer model answers)."""
    try:
        server = settings.answer_server()
    except ClipchatError as error:
        return Check("answer server", FAIL, error.detail)
    if server is None:
        return None
    if not online:
        return Check("answer server", OK, f"{server.shown}, model {server.model} (not asked: --online asks it)")
    return asyncio.run(_ask_answer_server(server, timeout_s))


async def _ask_answer_server(server: AnswerServer, timeout_s: float) -> Check:
    import openai

    key = server.key.get_secret_value() if server.key is not None else ""
    client = openai.AsyncOpenAI(base_url=server.url, api_key=key or "unused", max_retries=0, timeout=timeout_s)
    try:
        async with asyncio.timeout(timeout_s):
            names = [model.id async for model in client.models.list()]
    except (TimeoutError, openai.OpenAIError) as error:
        reason = f"no answer within {timeout_s:g} s" if isinstance(error, TimeoutError) else type(error).__name__
        if isinstance(error, openai.APIStatusError):
            reason += f" (HTTP {error.status_code})"
        return Check(
            "answer server",
            FAIL,
            f"{server.shown}/models: {reason}",
            "is the server running, and are CLIPCHAT_ANSWER_URL (with its /v1) and the API key right?",
        )
    finally:
        await client.close()
    if server.model not in names:
        listed = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        return Check(
            "answer server",
            FAIL,
            f"{server.shown} does not list the model {server.model!r}; it lists: {listed or 'nothing'}",
            "set CLIPCHAT_ANSWER_SERVER_MODEL to one of them (or pull the model into the server first)",
        )
    return Check("answer server", OK, f"{server.shown} answers and lists {server.model}")


def check_device(settings: VisionSettings) -> Check:
    import torch

    from vision.catalog.devices import resolve_device, resolve_dtype
    from vision.fast import bf16_rows
    from vision.pipeline import default_cache_dir

    try:
        device = resolve_device(settings.device)
        dtype = resolve_dtype(settings.dtype, device)
    except ClipchatError as error:
        return Check("device", FAIL, error.detail)
    name = str(dtype).removeprefix("torch.")
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        status = OK if free > 2 * 2**30 else WARN
        return Check(
            "device",
            status,
            f"{torch.cuda.get_device_name(device)}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free, {name}",
            "" if status == OK else "free GPU memory (2 GiB+)",
        )
    detail = f"CPU, {torch.get_num_threads()} threads, {name}" + (
        "" if torch.cuda.is_available() or settings.device != "auto" else " (no CUDA GPU seen)"
    )
    if dtype == torch.bfloat16 and bf16_rows.cpu_supports():  # builds it now if need be: the bot then finds it
        if not bf16_rows.load(settings.cache_dir or default_cache_dir()):
            return Check(
                "device",
                WARN,
                f"{detail}; the few-row bfloat16 kernel is unavailable: {bf16_rows.refusal()}",
                "install g++, or mend what the reason names: without the kernel a lone photo takes about 30% longer",
            )
        detail += ", few-row bfloat16 kernel ready"
    return Check("device", OK, detail)


def check_speed_paths(settings: VisionSettings) -> Check:
    """On a CPU: which speed paths run and why, as the last start measured them here (vision.fast.calibration)."""
    from vision.catalog.devices import SpeedPathsMode, resolve_device
    from vision.fast.calibration import cached_for_this_machine
    from vision.pipeline import default_cache_dir

    try:
        if resolve_device(settings.device).type != "cpu":
            return Check("speed paths", OK, "on a GPU: the CPU speed paths do not apply")
    except ClipchatError as error:
        return Check("speed paths", FAIL, error.detail)
    if settings.speed_paths != SpeedPathsMode.AUTO:
        state = "every one this CPU can run on" if settings.speed_paths == SpeedPathsMode.ALL else "all off"
        return Check("speed paths", OK, f"{state} (CLIPCHAT_SPEED_PATHS={settings.speed_paths}), none timed")
    folder = settings.cache_dir or default_cache_dir()
    found = cached_for_this_machine(folder)
    if not found:
        return Check(
            "speed paths",
            OK,
            "no choice cached for this CPU yet: a start times each path against the plain path (a few seconds) "
            f"and keeps the choice under {folder} once every path is decided (a busy machine can leave some undecided)",
        )
    lines = []
    for key, verdicts in found:
        models = f"CLIP {key['clip']} in {key['clip_dtype']}, {key['language_model']} in {key['lm_dtype']}"
        lines.append(f"{models}:" + "".join(f"\n      {verdict.describe()}" for verdict in verdicts))
    return Check(
        "speed paths", OK, f"chosen by timing on {key['cpu']}, {key['threads']} threads:\n    " + "\n    ".join(lines)
    )


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


def run_checks(bot: BotSettings, vision: VisionSettings, storage: StorageSettings, online: bool = False) -> list[Check]:
    checks = [check_token(bot)]
    if online:
        checks.append(asyncio.run(check_telegram(bot)))
    if (answers := check_answer_server(bot, online)) is not None:
        checks.append(answers)
    return [
        *checks,
        asyncio.run(check_database(storage)),
        *check_models(vision),
        *[answers for answers in (check_answer_model(vision),) if answers is not None],
        check_device(vision),
        check_speed_paths(vision),
        check_disk(vision),
    ]


def report(checks: list[Check], quiet: bool = False) -> int:
    for check in checks:
        if quiet and check.status == OK:
            continue
        line = f"{MARKS[check.status]} {check.name}: {check.detail}"
        print(line + (f"\n    fix: {check.fix}" if check.fix else ""))
    return 1 if any(check.status == FAIL for check in checks) else 0
