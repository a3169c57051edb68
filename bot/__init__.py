"""The clipchat application, in layers (see ARCHITECTURE.md):

ops/      the `clipchat` command line: run, chat, doctor, env-example, vision-server
adapter/  python-telegram-bot: handlers, sending, ordering, albums, wiring
core/     what the bot does; never imports `telegram`
engine/   the models behind one typed interface, in process or on Ray Serve
"""
