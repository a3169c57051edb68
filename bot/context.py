"""The callback context handlers receive: python-telegram-bot's, plus the services built at start-up."""

from __future__ import annotations

from telegram.ext import Application, CallbackContext, ExtBot

from .services import Services


class BotContext(CallbackContext[ExtBot, dict, dict, dict]):
    @property
    def services(self) -> Services:
        return self.application.bot_data["services"]

    @property
    def albums(self):
        return self.application.bot_data["albums"]


BotApplication = Application[ExtBot, BotContext, dict, dict, dict, object]
