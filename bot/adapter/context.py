"""Typed bot data and the callback context handlers receive (PTB's `ContextTypes`)."""

from __future__ import annotations

from telegram.ext import CallbackContext, ExtBot

from clipchat.i18n import Translator, translator

from ..core import records
from ..core.incoming import Where
from ..core.services import Services
from ..core.settings import BotSettings
from .albums import Albums


class BotData:
    """`application.bot_data`: the settings from the build, the services from the start-up hook."""

    def __init__(self) -> None:
        self.settings: BotSettings | None = None
        self.services: Services | None = None
        self.albums: Albums | None = None
        self.exit_status: int | None = None  # set when the bot stops to be restarted (jobs.exit_for_a_restart)


class BotContext(CallbackContext[ExtBot, dict, dict, BotData]):
    @property
    def services(self) -> Services:
        """The open services; updates are handled only between the start-up hook and shutdown, when they are."""
        services = self.bot_data.services
        if services is None:
            raise RuntimeError("an update was handled before the start-up hook opened the services, or after shutdown")
        return services

    @property
    def albums(self) -> Albums:
        albums = self.bot_data.albums
        if albums is None:
            raise RuntimeError("an update was handled by an application not made by build_application")
        return albums

    async def speaking_to(self, here: Where) -> Translator:
        """The catalog to answer in here: the chat's /settings language, else the sender's, else English."""
        return translator(await records.language(self.services, here))
