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


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively with AMX tiles (Intel Sapphire Rapids and later).

    There, `python -m bench` measured GPT-2's batched generation 2x faster than in float32 (AMX
    bf16 matmul 2.4 TFLOP/s against 0.33 for fp32 on 2 cores) with the test worlds' held-out
    captions identical; `load_models` keeps CLIP itself in float32 under `auto` (see there).
    Without AMX, bf16 is emulated or unmeasured, so float32 stays.
    """
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def resolve_dtype(name: str, device: torch.device, training: bool = False) -> torch.dtype:
    """`auto` is float16 on CUDA (the CLIP and GPT-2 weights were trained to tolerate it), bfloat16 on CPUs
    with AMX, and float32 elsewhere; for training, `auto` is always float32 (the optimiser needs it)."""
    if name == "auto":
        if training:
            return torch.float32
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    if name not in DTYPES:
        raise InvalidOptions(f"Unknown dtype {name!r}: use one of auto, {', '.join(sorted(DTYPES))}.")
    dtype = DTYPES[name]
    if dtype == torch.float16 and device.type == "cpu":
        raise InvalidOptions("float16 is not supported on the CPU; use float32 (or bfloat16 on CPUs that have it).")
    return dtype
