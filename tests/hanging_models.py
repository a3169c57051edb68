"""`python -m tests.hanging_models run ...`: `clipchat run` on models that hang for good once told to.

A hung GPU never raises and never returns. Here PyTorch's global forward hook plays one: while the
file named by $CLIPCHAT_TEST_HANG_FILE exists, every module call on the model thread (the next
batch's first layer) waits for ever, with the GIL released, as a thread stuck in a driver call does.
The bot itself runs unchanged (`bot.ops.cli.main`); only the test that sets the variable reaches this.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import torch

from bot.ops.cli import main

HANG_FILE = "CLIPCHAT_TEST_HANG_FILE"


def hang_while(trigger: Path) -> None:
    never = threading.Event()

    def hook(module: torch.nn.Module, args: tuple) -> None:
        # On the model thread only: the photos' resize runs torchvision modules on the decoding threads
        if threading.current_thread().name.startswith("vision-model") and trigger.exists():
            never.wait()  # for ever: nothing sets it

    torch.nn.modules.module.register_module_forward_pre_hook(hook)


if __name__ == "__main__":
    hang_while(Path(os.environ[HANG_FILE]))
    sys.exit(main())
