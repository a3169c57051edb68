"""The Telegram adapter: python-telegram-bot handlers, sending, ordering, albums and the application's wiring.

Handlers unpack updates and call `bot.core`; nothing below this package imports `telegram`.
"""
