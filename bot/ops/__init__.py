"""Operations: the `clipchat` command line, the runner, the terminal chat, `doctor` and `env-example`."""
