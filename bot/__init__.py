"""The clipchat application: command line and (with the bot issue) the Telegram bot."""
