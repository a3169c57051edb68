"""The application core: what the bot does, over the services built at start-up. Never imports `telegram`.

The Telegram adapter and `clipchat chat` both call these functions; they answer
through the `Chat` port (`incoming.py`), which each of them implements.
"""
