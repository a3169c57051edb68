"""The composition root: `build_application()` wires settings, services, routing and jobs.

Cheap objects (the database engine, the update processor) are built here; the heavy
ones (models, migrations) in the start-up hook, then reach handlers as typed bot data.
"""

from __future__ import annotations

import asyncio
import logging
import re
from concurrent.futures import Executor

from telegram import CallbackQuery, Message, Update
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from clipchat.errors import ClipchatError, StorageDown, UserError
from clipchat.i18n import N_, choose, translator
from clipchat.kinds import ChatKind
from clipchat.metrics import ERRORS
from storage import StorageSettings
from vision import VisionModels, load_models
from vision.catalog.settings import VisionSettings

from ..core import quotas, records
from ..core.incoming import Where
from ..core.services import open_services, plan_database
from ..core.settings import BotSettings
from ..engine import LocalModels, ModelFeatures, Models
from ..engine.batcher import model_thread
from ..engine.budget import return_large_blocks_to_the_os
from . import admin, commands, handlers, jobs
from .albums import Albums
from .context import BotContext, BotData
from .monitoring import MeteredRateLimiter, MetricsServer, UpdateCounter, counted_as
from .ordering import PerUserOrder
from .redaction import redact_token_in_logs
from .sending import SEND_DEADLINE_S, reply
from .telegram_chat import QuietRequest
from .telegram_io import addressed, where

log = logging.getLogger(__name__)
SORRY = N_("Sorry, something went wrong on my side. Please try again in a moment.")
NOT_ALLOWED = N_("Sorry, this bot is private.")


def build_application(
    settings: BotSettings,
    vision_settings: VisionSettings | None = None,
    storage_settings: StorageSettings | None = None,
    *,
    models: VisionModels | None = None,
) -> Application:
    """Everything the bot needs, wired; models load and the database migrates in the start-up hook."""
    token = settings.bot_token()
    redact_token_in_logs(token)
    settings.answer_server()  # settings that cannot work together are refused now, in one line
    vision_settings = vision_settings or VisionSettings()
    storage_settings = storage_settings or StorageSettings()
    database, shared = plan_database(settings, storage_settings)  # nothing connects before the start-up hook
    metrics = MetricsServer(settings.metrics_address, settings.metrics_port)

    async def post_init(application: Application) -> None:
        data: BotData = application.bot_data
        metrics.start()  # first: a port in use fails the start in one line, before minutes of model loading
        data.services = await open_services(
            settings,
            storage_settings,
            lambda: open_models(settings, vision_settings, models),
            database=database,
        )
        await application.bot.set_my_commands(commands.MENU)
        for language, code in commands.MENU_LANGUAGES.items():  # the menu in each language the bot speaks
            await application.bot.set_my_commands(commands.commands_in(translator(language)), language_code=code)
        jobs.schedule(application.job_queue, settings.maintenance_hours, settings.heartbeat_s)
        log.info("clipchat is up as @%s", application.bot.username)

    async def post_shutdown(application: Application) -> None:
        data: BotData = application.bot_data
        if data.services is not None:
            await data.services.close()
            data.services = None
        await metrics.stop()
        if data.exit_status is not None:  # stopped to be restarted: the stuck model thread must not hold the exit
            jobs.leave(data.exit_status)

    application = (
        ApplicationBuilder()
        .token(token)
        .base_url(settings.base_url)
        .base_file_url(settings.base_file_url)
        .local_mode(settings.local_mode)
        .rate_limiter(
            MeteredRateLimiter(
                overall_max_rate=settings.rate_limit_per_second,
                group_max_rate=settings.rate_limit_per_group_minute,
                max_retries=settings.send_retries,
            )
        )
        .concurrent_updates(PerUserOrder(settings.max_concurrent_updates, settings.user_queue, shared))
        # Every update in progress may be sending at once (PTB's default pool, 256 connections with a
        # 1 s wait, dropped replies under a flood), plus the jobs; a request that finds the pool full
        # (chat actions run beside their updates) waits its turn as long as a send may take. An answer is
        # waited for as long too: past PTB's 5 s a slow Bot API's message was taken for lost and sent again
        # (it had arrived: a second copy), and a send that may have arrived is never repeated (`with_retries`).
        .request(
            QuietRequest(
                connection_pool_size=settings.max_concurrent_updates + 8,
                pool_timeout=SEND_DEADLINE_S,
                read_timeout=SEND_DEADLINE_S,
            )
        )
        .context_types(ContextTypes(context=BotContext, bot_data=BotData))
        .post_init(post_init)
        .post_shutdown(post_shutdown)
        .build()
    )
    application.bot_data.settings = settings
    # An album is answered within its quiet time, a download, a look at the models and a send, each at its own
    # deadline (unless its photos wait for slots); whoever waits for it longer than that hears "busy"
    settle_within = settings.album_wait_s + settings.download_timeout_s + settings.model_timeout_s + SEND_DEADLINE_S
    application.bot_data.albums = Albums(settings.album_wait_s, settle_within=settle_within)
    add_routes(application)
    return application


async def open_models(
    settings: BotSettings, vision_settings: VisionSettings, models: VisionModels | None = None
) -> Models:
    """The models the settings choose: the vision application on a Ray cluster, or `models` (else the
    operator's model set, loaded here) served in this process; with an answer server, its answers to open
    questions."""
    opened = await _open_models(settings, vision_settings, models)
    server = settings.answer_server()
    if server is None:
        return opened
    from ..engine.served import ServedModels

    log.info("open questions go to %s (model %s), checked by CLIP here", server.shown, server.model)
    return ServedModels(opened, server)


async def _open_models(
    settings: BotSettings, vision_settings: VisionSettings, models: VisionModels | None = None
) -> Models:
    if settings.inference == "ray":
        from ..engine.ray_serve import RayModels

        return await RayModels.connect(vision_settings, settings.ray_address, settings.model_timeout_s)
    return_large_blocks_to_the_os()  # decoded photos' memory goes back when they are done
    # The models are loaded on the thread that will run them: each thread that runs PyTorch
    # gets its own OpenMP team, and a second team measured 40-50% slower batches on 2 cores.
    thread = model_thread("vision")
    try:
        if models is None:
            models = await asyncio.get_running_loop().run_in_executor(thread, load_configured_models, vision_settings)
    except BaseException:
        thread.shutdown(wait=False)
        raise
    return serve_locally(models, settings, vision_settings, thread)


def load_configured_models(vision_settings: VisionSettings) -> VisionModels:
    """The operator's model set, device and dtype; call it on the thread that will run them."""
    return load_models(
        vision_settings.model_set(),
        device=vision_settings.device,
        dtype=vision_settings.dtype,
        cache_dir=vision_settings.cache_dir,
        hub_cache_dir=vision_settings.hub_cache_dir,
        allow_random_weights=vision_settings.allow_random_weights,
        speed_paths=vision_settings.speed_paths,
    )


def serve_locally(
    models: VisionModels, settings: BotSettings, vision_settings: VisionSettings, thread: Executor
) -> LocalModels:
    """The in-process transport as the bot configures it (`clipchat bench` measures this very object)."""
    return LocalModels(
        ModelFeatures.configured(models, vision_settings),
        max_batch=settings.max_batch,
        max_wait=settings.max_wait_ms / 1000,
        max_queue=settings.vision_queue,
        executor=thread,
        decode_workers=settings.decode_workers,
        decode_memory=settings.decode_memory_mb * 2**20,
        timeout=settings.model_timeout_s,
    )


def add_routes(application: Application) -> None:
    """All routing in one place; handler group -2 guards access before anything runs but the update counter
    and a group's upgrade to a supergroup, which answer nobody; group -1 notes who is in each group."""
    application.add_handler(TypeHandler(Update, UpdateCounter()), group=-4)  # every update, refused ones too
    # A group's upgrade to a supergroup moves its records (its ban among them) before the access check, which
    # would refuse both announcements of an upgrade by a banned owner: the settings would stay behind, and a
    # banned group would come back under its new id.
    application.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, handlers.on_upgrade), group=-3)
    application.add_handler(TypeHandler(Update, check_access), group=-2)
    # Before any answer, so that someone's first photo in a group is posted after they were first seen there
    in_groups = filters.UpdateType.MESSAGE & filters.ChatType.GROUPS
    application.add_handler(MessageHandler(in_groups, handlers.on_group_message), group=-1)
    channel = filters.UpdateType.CHANNEL_POST
    private = filters.ChatType.PRIVATE
    for command in commands.COMMANDS:
        # New messages only: an edit is not a new command, and a channel post has no user to answer
        application.add_handler(CommandHandler(command.name, command.handler, filters=filters.UpdateType.MESSAGE))
    # In a channel only /settings makes sense (its posts come from the channel, not from a person);
    # other commands posted there are ignored rather than answered into the channel
    application.add_handler(MessageHandler(channel & CommandForThisBot("settings"), admin.settings))
    application.add_handler(MessageHandler(channel & filters.PHOTO, handlers.on_channel_photo))
    application.add_handler(CallbackQueryHandler(admin.settings_button, pattern=r"^settings:"))
    application.add_handler(CallbackQueryHandler(admin.forget_button, pattern=r"^forget:"))
    new_messages = filters.UpdateType.MESSAGE
    application.add_handler(MessageHandler(new_messages & (filters.PHOTO | filters.Document.IMAGE), handlers.on_photo))
    application.add_handler(MessageHandler(new_messages & private & filters.Document.ALL, handlers.on_other_file))
    application.add_handler(MessageHandler(new_messages & filters.TEXT & ~filters.COMMAND, handlers.on_text))
    application.add_error_handler(on_error)


class CommandForThisBot(filters.MessageFilter):
    """A message that is /`name`, bare or addressed to this bot as /`name`@its_username (any case, as
    Telegram matches usernames): /`name`@OtherBot is for another bot in the same chat. CommandHandler
    checks this itself; channel posts, which it does not take, come through this filter."""

    def __init__(self, name: str) -> None:
        super().__init__(name=f"CommandForThisBot({name})")
        self.pattern = re.compile(rf"/{re.escape(name)}(?:@(\w+))?(?:\s|$)", re.IGNORECASE)

    def filter(self, message: Message) -> bool:
        found = self.pattern.match(message.text or "")
        if found is None:
            return False
        return found[1] is None or found[1].lower() == (message.get_bot().username or "").lower()


async def check_access(update: Update, context: BotContext) -> None:
    """Stop updates from users and chats outside the allow-lists."""
    user = update.effective_user
    chat = update.effective_chat
    sender_chat = update.effective_message.sender_chat if update.effective_message is not None else None
    verdict = await quotas.access(
        context.services,
        user.id if user else None,
        chat.id if chat else None,
        sender_chat.id if sender_chat is not None else None,
    )
    if verdict == quotas.Verdict.SERVED:
        return
    log.info(
        "refused update from user %s in chat %s (%s)",
        user and user.id,
        chat and chat.id,
        "banned" if verdict == quotas.Verdict.BANNED else "allow-list",
    )
    if (
        verdict == quotas.Verdict.OUTSIDE
        and update.effective_message is not None
        and chat is not None
        and chat.type == ChatKind.PRIVATE
    ):
        _ = translator(choose(None, user.language_code if user else None))  # refused: their chat has no settings
        await reply(update.effective_message, _(NOT_ALLOWED))
    raise ApplicationHandlerStop


async def on_error(update: object, context: BotContext) -> None:
    """One place for every error: people get a message they can act on, operators get the detail or traceback."""
    error = context.error
    if error is None:  # PTB calls error handlers with the error set; without one there is nothing to report
        return
    ERRORS.labels(type(error).__name__).inc()
    message = update.effective_message if isinstance(update, Update) else None
    if isinstance(error, StorageDown):  # the database stayed unreachable through the retries, or is full
        log.warning("database unavailable, update answered with 'try again': %s", error.detail)
        text = StorageDown.user_message
    elif isinstance(error, UserError):
        log.info("%s: %s", type(error).__name__, error.detail)
        text = error.user_message
        if not text:  # already said (a budget refused again the same day): nothing more to tell
            return
    elif isinstance(error, ClipchatError):  # the operator's to fix: say so in the log, apologise in the chat
        log.error("%s: %s", type(error).__name__, error.detail)
        text = SORRY
    elif isinstance(error, Forbidden):
        log.info("not allowed to write there (blocked, or removed from the chat): %s", error)
        return
    elif isinstance(error, BadRequest):  # a NetworkError subclass in PTB, but Telegram answered: we asked wrong
        log.error("Telegram refused a request: %s", error, exc_info=error)
        text = SORRY
    elif isinstance(error, RetryAfter | NetworkError):
        log.warning("Telegram unreachable or limiting us, update dropped after retries: %s", error)
        return
    else:
        log.error("unhandled error while handling an update", exc_info=error)
        text = SORRY
    query = update.callback_query if isinstance(update, Update) else None
    if query is not None and query.message is not None:  # a press on a button: the presser must hear why
        await _tell_the_presser(query, context, error, text)
        return
    if message is not None and (message.chat.type == ChatKind.PRIVATE or _spoken_to(message, context)):
        language = await _reply_language(context, message, error)
        text = error.said_in(language) if isinstance(error, UserError) else translator(language)(text)
        try:
            with counted_as("error"):
                await reply(message, text)
        except (Forbidden, NetworkError, RetryAfter) as send_error:
            log.warning("could not send the error message: %s", send_error)


async def _tell_the_presser(query: CallbackQuery, context: BotContext, error: BaseException, text: str) -> None:
    """A press whose handling failed ("busy" while an album is still being answered, the database down):
    in a group nobody spoke to the bot, so nothing else would say so. The question it pressed on says it,
    its buttons kept so that a later press can try again."""
    chat = query.message.chat if query.message is not None else None
    if chat is None:
        return
    here = Where(chat.id, ChatKind(chat.type), query.from_user.id, query.from_user.language_code)
    language = choose(None, here.language)
    if not isinstance(error, StorageDown) and context.bot_data.services is not None:
        try:
            language = await records.language(context.bot_data.services, here)
        except Exception as failure:  # whatever broke the press may break this read too
            log.warning("could not read the chat's language for a press: %s: %s", type(failure).__name__, failure)
    said = error.said_in(language) if isinstance(error, UserError) else translator(language)(text)
    shown = getattr(query.message, "text", None) or ""
    kept = shown.split("\n\n", 1)[1] if shown.startswith(said + "\n\n") else shown  # said once, not per press
    try:
        with counted_as("error"):
            await query.edit_message_text(
                f"{said}\n\n{kept}" if kept else said, reply_markup=getattr(query.message, "reply_markup", None)
            )
    except (Forbidden, NetworkError, RetryAfter) as send_error:  # BadRequest too: the message is gone or old
        log.warning("could not tell the presser: %s", send_error)


async def _reply_language(context: BotContext, message, error: BaseException) -> str:
    """The language to answer an error in; the chat's setting is not read when the database is what failed."""
    here = where(message)
    services = context.bot_data.services
    if isinstance(error, StorageDown) or services is None:
        return choose(None, here.language)
    try:
        return await records.language(services, here)
    except Exception as failure:  # whatever broke the update may break this read too: the sender's language will do
        log.warning("could not read the chat's language for an error reply: %s: %s", type(failure).__name__, failure)
        return choose(None, here.language)


def _spoken_to(message, context: BotContext) -> bool:
    text = message.text or message.caption or ""
    return bool(re.match(r"^/\w", text)) or addressed(message, context.bot.username, context.bot.id)
