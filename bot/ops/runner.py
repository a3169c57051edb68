"""`clipchat run` (the bot, long polling or webhook) and `clipchat chat` (the same dialogue in a terminal)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
import time

from clipchat.errors import OperatorError
from storage import StorageSettings
from vision.catalog.settings import VisionSettings

from ..core.settings import BotSettings
from .logs import report_progress

log = logging.getLogger(__name__)


def add_commands(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="run the Telegram bot (long polling, or --webhook URL)")
    run.add_argument(
        "--webhook",
        metavar="URL",
        help="public HTTPS URL Telegram should post updates to; starts the webhook server instead of polling",
    )
    run.add_argument("--listen", help="address for the webhook server (default: CLIPCHAT_WEBHOOK_LISTEN)")
    run.add_argument("--port", type=int, help="port for the webhook server (default: CLIPCHAT_WEBHOOK_PORT)")
    run.add_argument("--models", metavar="DIR_OR_NAME", help="model set (default: CLIPCHAT_MODELS)")
    run.set_defaults(handler=run_bot)

    chat = commands.add_parser("chat", help="talk to the models in this terminal: /photo PATH, then questions")
    chat.add_argument("--models", metavar="DIR_OR_NAME", help="model set (default: CLIPCHAT_MODELS)")
    chat.add_argument(
        "--database", metavar="URL", help="keep the conversation in this database (default: a temporary one)"
    )
    chat.set_defaults(handler=run_chat)

    doctor = commands.add_parser("doctor", help="check configuration, token, database, models and device")
    doctor.add_argument(
        "--alive", action="store_true", help="only check the running bot's heartbeat (the container health check)"
    )
    doctor.add_argument("--quiet", action="store_true", help="print only problems")
    doctor.add_argument("--online", action="store_true", help="also ask Telegram whose token it is (getMe)")
    doctor.set_defaults(handler=run_doctor)

    server = commands.add_parser(
        "vision-server",
        help="run the models on a Ray cluster with Ray Serve (then start bots with CLIPCHAT_INFERENCE=ray)",
    )
    server.add_argument("--address", help="Ray cluster address (default: start a local one)")
    server.add_argument("--replicas", type=int, default=1, help="fixed number of replicas (default 1)")
    server.add_argument(
        "--autoscale",
        type=int,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="let Serve scale between MIN and MAX replicas with the queue",
    )
    server.add_argument("--gpus-per-replica", type=float, default=0.0, help="GPUs each replica claims (e.g. 1, 0.5)")
    server.add_argument("--cpus-per-replica", type=float, default=1.0)
    server.add_argument("--models", metavar="DIR_OR_NAME", help="model set (default: CLIPCHAT_MODELS)")
    server.add_argument(
        "--stop-timeout",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="on Ctrl-C or SIGTERM, how long to wait for the cluster to remove the application "
        "(default 20; a second Ctrl-C stops waiting)",
    )
    server.set_defaults(handler=run_vision_server)

    example = commands.add_parser("env-example", help="print a .env file documenting every setting")
    example.add_argument(
        "--markdown",
        action="store_true",
        help="print the same settings as the markdown reference instead (docs/settings.md)",
    )
    example.set_defaults(handler=lambda args, settings: print(_env_example(markdown=args.markdown)) or 0)


class TelegramUnreachable(OperatorError):
    """The Bot API did not answer at start-up."""


def run_bot(args: argparse.Namespace, vision_settings: VisionSettings) -> int:
    from telegram import Update
    from telegram.error import BadRequest, InvalidToken, NetworkError

    from ..adapter.application import build_application
    from ..adapter.webhook import run_webhook

    settings = BotSettings()
    if args.models:
        vision_settings = vision_settings.model_copy(update={"models": args.models})
    report_progress()  # INFO, unless CLIPCHAT_LOG_LEVEL says otherwise
    application = build_application(settings, vision_settings, StorageSettings())
    if settings.inference != "ray":  # with ray, the models are the vision server's
        _ensure_models(vision_settings)
    # PTB logs a failed start-up request with its traceback, then raises it: the error below is the one report
    logging.getLogger("telegram.ext").addFilter(_not_an_aborted_start)
    try:
        if not args.webhook:
            log.info("starting with long polling")
            application.run_polling(allowed_updates=Update.ALL_TYPES)
            return 0
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else secrets.token_urlsafe(32)
        listen, port = args.listen or settings.webhook_listen, args.port or settings.webhook_port
        log.info("starting the webhook server on %s:%d for %s", listen, port, args.webhook)
        run_webhook(application, args.webhook, listen, port, secret)  # not PTB's server: see its module
        return 0
    except InvalidToken:  # its message repeats the token: it must not reach the log as a traceback
        raise TelegramUnreachable(
            detail="Telegram refused the bot token (Unauthorized): it was revoked or mistyped; "
            "copy the current one from @BotFather (/mybots > API Token)."
        ) from None
    except NetworkError as error:  # TimedOut too; BadRequest means Telegram answered, and is not this
        if isinstance(error, BadRequest):
            raise
        raise TelegramUnreachable(
            detail=f"Cannot reach the Telegram Bot API at {settings.base_url} ({error}): "
            "check this machine's network, or CLIPCHAT_BASE_URL."
        ) from error


def _not_an_aborted_start(record: logging.LogRecord) -> bool:
    """False for PTB's 'Network Retry Loop (Bootstrap ...): ... Aborting.' records: the error is raised after it."""
    message = record.getMessage()
    return not (message.startswith("Network Retry Loop (Bootstrap") and "Aborting" in message)


def run_doctor(args: argparse.Namespace, vision_settings: VisionSettings) -> int:
    from .doctor import alive, report, run_checks

    settings = BotSettings()
    if args.alive:
        return report([alive(settings)], quiet=args.quiet)
    return report(run_checks(settings, vision_settings, StorageSettings(), online=args.online), quiet=args.quiet)


class _Stop(Exception):
    """SIGINT or SIGTERM arrived: stop serving."""


def _stop_on_signal(signum: int, frame) -> None:
    raise _Stop(signal.Signals(signum).name)


def run_vision_server(args: argparse.Namespace, vision_settings: VisionSettings) -> int:
    from ..engine.ray_serve import APP_NAME, deploy, join_cluster, undeploy

    if args.models:
        vision_settings = vision_settings.model_copy(update={"models": args.models})
    settings = BotSettings()
    low, high = args.autoscale or (1, None)
    report_progress()  # INFO, unless CLIPCHAT_LOG_LEVEL says otherwise
    if args.address is None:  # a local cluster: the replicas load the models here, so this check holds for them
        _ensure_models(vision_settings)
    join_cluster(args.address)
    # Ctrl-C and SIGTERM both stop the server, here rather than in Ray's blocking serve.run(): that
    # one lets KeyboardInterrupt reach Ray's exception hook, which waits on the cluster (forever, once
    # the cluster has stopped), and joining the cluster installed Ray's SIGTERM handler, which aborts
    # with a stack dump. So the handlers go in after joining; explicitly for SIGINT too, since a shell
    # starts background jobs with SIGINT ignored.
    previous = {signum: signal.signal(signum, _stop_on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            deploy(
                vision_settings,
                replicas=args.replicas,
                min_replicas=low,
                max_replicas=high,
                gpus_per_replica=args.gpus_per_replica,
                cpus_per_replica=args.cpus_per_replica,
                max_batch=settings.max_batch,
                max_wait_s=settings.max_wait_ms / 1000,
                address=args.address,
                timeout_s=settings.model_timeout_s,
                decode_memory=settings.decode_memory_mb * 2**20,
            )
            log.info("%s is serving; Ctrl-C or SIGTERM removes it from the cluster and stops", APP_NAME)
            while True:
                time.sleep(3600)
        except _Stop as stop:  # during the deployment too: its replicas may already be running
            log.info("%s: removing %s from the cluster (waiting at most %g s)", stop, APP_NAME, args.stop_timeout)
        try:
            removed = undeploy(args.stop_timeout)
        except _Stop:
            log.warning("stopping without waiting for the cluster to remove %s", APP_NAME)
            removed = False
        if not removed:
            # The removal thread is still inside Ray, waiting on a cluster that is gone: finalising the
            # interpreter under it ended in SIGSEGV (1 run in 3 here), so leave without finalising.
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    finally:
        for signum, handler in previous.items():  # None: a handler set outside Python, such as Ray's
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    return 0


def _env_example(markdown: bool = False) -> str:
    from .env_example import env_example, settings_markdown

    return settings_markdown() if markdown else env_example()


def run_chat(args: argparse.Namespace, vision_settings: VisionSettings) -> int:
    from .console import console

    if args.models:
        vision_settings = vision_settings.model_copy(update={"models": args.models})
    _ensure_models(vision_settings)
    return asyncio.run(console(vision_settings, args.database))


def _ensure_models(vision_settings: VisionSettings) -> None:
    """Fail now, in one line, when the models cannot be had: before the database, Telegram or Ray start
    (loading the models checks again, which costs a few file lookups)."""
    from vision.catalog.hub import ensure_available

    ensure_available(vision_settings.model_set(), vision_settings.hub_cache_dir)
