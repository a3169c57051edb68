"""Pick the device and dtype the models run on."""

from __future__ import annotations

import torch

from .errors import InvalidOptions

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` is the first CUDA GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise InvalidOptions(f"Unknown device {name!r}: use auto, cpu, cuda or cuda:N.") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidOptions(f"Device {name!r} was asked for, but PyTorch sees no CUDA GPU here. "
                             "Use CLIPCHAT_DEVICE=cpu or install a CUDA build of PyTorch.")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` is float16 on CUDA (the CLIP and GPT-2 weights were trained to tolerate it) and float32 elsewhere."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise InvalidOptions(f"Unknown dtype {name!r}: use one of auto, {', '.join(sorted(DTYPES))}.")
    dtype = DTYPES[name]
    if dtype == torch.float16 and device.type == "cpu":
        raise InvalidOptions("float16 is not supported on the CPU; use float32 (or bfloat16 on CPUs that have it).")
    return dtype
