"""Pick the device and dtype the models run on."""

from __future__ import annotations

import functools
import logging
from enum import StrEnum
from pathlib import Path

import torch

from clipchat.errors import InvalidConfig

log = logging.getLogger(__name__)

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` is the first CUDA GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise InvalidConfig(f"Unknown device {name!r}: use auto, cpu, cuda or cuda:N.") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidConfig(
            f"Device {name!r} was asked for, but PyTorch sees no CUDA GPU here. "
            "Use CLIPCHAT_DEVICE=cpu or install a CUDA build of PyTorch."
        )
    return device


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the Linux kernel reports them in /proc/cpuinfo (`avx512_bf16`, `amx_bf16`, ...),
    which lists only what the kernel lets programs use; empty where there is no such file."""
    return _cpu_flags(Path("/proc/cpuinfo"))


@functools.cache
def _cpu_flags(cpuinfo: Path) -> frozenset[str]:
    try:
        text = cpuinfo.read_text()
    except OSError as error:  # not Linux: bfloat16 under `auto` and the CPU kernels stay off, and we say why
        log.info("CPU flags unknown (%s): treating this CPU as one without native bfloat16", error)
        return frozenset()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":  # x86's name for the line; every core lists the same
            return frozenset(value.split())
    return frozenset()


# The CPU features the speed paths and bfloat16 depend on: what a benchmark's reader and the speed-path cache
# need to tell two CPUs apart (the rest of /proc/cpuinfo's flags change nothing clipchat does)
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


class SpeedPathsMode(StrEnum):
    """Which CPU speed paths (`vision.fast`) load_models plugs in: each that measured at least as fast as the plain
    path on this machine (auto), every one the machine can run (all), or none."""

    AUTO = "auto"
    ALL = "all"
    NONE = "none"


def isa_flags() -> tuple[str, ...]:
    """Of ISA_FLAGS, the ones this CPU has, in ISA_FLAGS' order."""
    flags = cpu_flags()
    return tuple(flag for flag in ISA_FLAGS if flag in flags)


def cpu_model() -> str:
    """The CPU's model string from /proc/cpuinfo (`model name`, e.g. "AMD EPYC 9R14 96-Core Processor"), where
    `platform.machine()` says only x86_64; the architecture where the file or the line is missing."""
    return _cpu_model(Path("/proc/cpuinfo"))


@functools.cache
def _cpu_model(cpuinfo: Path) -> str:
    import platform

    try:
        text = cpuinfo.read_text()
    except OSError:
        return platform.machine() or "unknown CPU"
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("model name", "Model Name", "cpu model"):  # x86; some ARM and MIPS kernels
            return " ".join(value.split())
    return platform.machine() or "unknown CPU"


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively: AMX (Intel Sapphire Rapids and later) or AVX-512 BF16
    dot products (AMD Zen 4 and later, Intel Cooper Lake).

    There bfloat16 matmuls run several times faster than float32 ones (docs/benchmarks.md has the figures),
    and the test world's held-out captions, tags and text-to-photo retrieval stay within 1 point of float32's,
    with CLIP in bfloat16 too (measured in the test suite). Elsewhere bfloat16 is emulated, so float32 stays.
    """
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def resolve_dtype(name: str, device: torch.device, training: bool = False) -> torch.dtype:
    """`auto` is float16 on CUDA (the CLIP and GPT-2 weights were trained to tolerate it), bfloat16 on CPUs
    that multiply it natively (`cpu_has_fast_bf16`), and float32 elsewhere; for training, `auto` is always
    float32 (the optimiser needs it). CLIP and the language models share the one rule: every process that embeds
    photos (the bot, `db reindex`) stores vectors /search compares, and a float32 vector and a bfloat16 one of
    the same photo are as good as each other there (measured on the test world: docs/benchmarks.md)."""
    if name == "auto":
        if training:
            return torch.float32
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    if name not in DTYPES:
        raise InvalidConfig(f"Unknown dtype {name!r}: use one of auto, {', '.join(sorted(DTYPES))}.")
    dtype = DTYPES[name]
    if dtype == torch.float16 and device.type == "cpu":
        raise InvalidConfig("float16 is not supported on the CPU; use float32 (or bfloat16 on CPUs that have it).")
    return dtype
