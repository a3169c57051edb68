"""Training and evaluating captioners (`clipchat train-captioner`, `clipchat evaluate`).

Not part of the bot's runtime: its extra dependencies come with `pip install 'clipchat[train]'`.
"""
