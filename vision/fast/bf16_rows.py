"""A few rows of bfloat16 through a linear layer at the speed of reading its weight (kernels/bf16_rows.cpp).

A caption step for one photo multiplies one row by each of GPT-2's weight matrices, so its time is the time
to read them. At one to three rows oneDNN's packed product (packed_linear) reads them at well under the rate
a plain pass over memory does; this kernel, one loop of AVX-512 BF16 dot products reading each weight row
once, comes close to that rate. At four rows oneDNN is as fast, so it takes over (MAX_ROWS). Neither oneDNN
nor MKL nor Inductor offered a faster few-row product, so it is hand-written; docs/benchmarks.md has the
figures. Its error against a float64 product is oneDNN's.

    if bf16_rows.load(cache_dir):               # this CPU has AVX-512 BF16, and the kernel is built
        y = bf16_rows.linear(x, weight, bias)   # x (..., K) of at most MAX_ROWS rows, weight (N, K)

The same library holds `gpt2_step`, a whole GPT-2 step for one to three captions over this kernel in one
call (gpt2_steps.py says when it runs).

It builds through `torch.utils.cpp_extension.load` (the system's C++ compiler and ninja; ABI flags, a build
lock, and rebuilding when the source, flags or PyTorch's headers change are PyTorch's), into a directory
named for this source and this PyTorch, so a new either never loads a stale library. `load` takes it, in
order, from under the environment's prefix (`share/clipchat/kernels`, where `python -m vision.fast.bf16_rows`
puts it while an image is built: loaded as it is, no compiler needed), from the user's cache (one build
serves every cache directory on a machine), or builds it into `cache_dir/kernels` (seconds, once). Without
the CPU feature, a compiler or ninja it says why in the log once and returns False; linears stay on oneDNN.

No private API: the CPU's features come from /proc/cpuinfo (`catalog.devices.cpu_flags`).
"""

from __future__ import annotations

import hashlib
import logging
import platform
import sys
import threading
from pathlib import Path

import torch

from ..catalog.devices import cpu_flags

log = logging.getLogger(__name__)

MAX_ROWS = 3  # kMaxRows in the source: at 4 rows oneDNN was as fast
NAME = "clipchat_bf16_rows"
SOURCE = Path(__file__).parent / "kernels" / "bf16_rows.cpp"
# OpenMP's calls are left for PyTorch's own runtime to answer (compiled with -fopenmp, not linked with it):
# linking it would name the system's libgomp, a second runtime with its own threads, wherever PyTorch's
# wheel ships a renamed one
CFLAGS = ("-O3", "-fopenmp")
BUILD_ERROR_CHARS = 1000  # the compiler's last words are the ones that say what failed
_loaded: Path | None = None
_refused: str | None = None
_loading = threading.Lock()


def is_x86_64() -> bool:
    return platform.machine() in ("x86_64", "AMD64")


def cpu_supports() -> bool:
    return is_x86_64() and "avx512_bf16" in cpu_flags()


def build_key() -> str:
    """Names the build directory: a new source, flags or PyTorch (version, installation) is a new directory,
    never a stale library loaded; one user cache serves several environments."""
    torch_build = f"{torch.__version__} {Path(torch.__file__).parent} {CFLAGS}"
    return hashlib.sha256(SOURCE.read_bytes() + torch_build.encode()).hexdigest()[:16]


def library_path(directory: Path) -> Path:
    """Where a build into `directory` leaves the library (cpp_extension names it after the extension)."""
    return directory / build_key() / f"{NAME}.so"


def prebuilt_dir() -> Path:
    return Path(sys.prefix) / "share" / "clipchat" / "kernels"


def shared_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("clipchat")) / "kernels"


def load(cache_dir: Path) -> bool:
    """Make `linear` and `gpt2_step` usable in this process (see the module's docstring); whether it is."""
    with _loading:  # one library per process: a second registration of the op would abort the load
        return _load(cache_dir)


def _load(cache_dir: Path) -> bool:
    global _loaded, _refused
    if _loaded is not None:
        return True
    if _refused is not None:
        return False
    try:
        if not cpu_supports():
            raise OSError("this CPU has no AVX-512 BF16 (or its flags could not be read)")
        path = _load_prebuilt()
        if path is None:
            # a build already in the user's cache is checked (and remade if stale) under its own lock
            path = build(shared_dir() if library_path(shared_dir()).is_file() else cache_dir / "kernels")
    except (OSError, RuntimeError) as error:
        _refused = str(error)
        log.warning(
            "bfloat16 one-row kernel unavailable (%s): GPT-2's steps stay on oneDNN, about 30%% slower "
            "for a lone photo",
            _refused,
        )
        return False
    _loaded = path
    log.info("bfloat16 one-row kernel loaded from %s", path)
    return True


def _load_prebuilt() -> Path | None:
    """The image's library, loaded as it is (its directory is read-only to the bot); None where there is none
    for this source and PyTorch, or it does not load."""
    path = library_path(prebuilt_dir())
    if not path.is_file():
        return None
    try:
        torch.ops.load_library(str(path))
    except OSError:  # damaged, say: build one of our own
        log.warning("cannot load %s; building the kernel again", path, exc_info=True)
        return None
    return path


def refusal() -> str | None:
    """Why `load` returned False, if it did."""
    return _refused


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x (..., K) of at most MAX_ROWS rows, weight (N, K), bias (N,) or None, all bfloat16 -> (..., N)."""
    rows = x.reshape(-1, x.shape[-1]).contiguous()  # (M, K)
    return torch.ops.clipchat.bf16_rows_linear(rows, weight, bias).view(*x.shape[:-1], weight.shape[0])


def gpt2_step(
    h: torch.Tensor,
    params: list[torch.Tensor],
    kv: list[torch.Tensor],
    start: int,
    heads: int,
    scales: list[float],
    eps: float,
) -> torch.Tensor:
    """One greedy step of a GPT-2 for one to three captions, its linears on this kernel (gpt2_steps.py says
    which models, and what `params` holds): h (B, 1, D) embeddings at `start`, kv per block (2, B, H, length,
    head_dim) written there -> (B, vocab) float32 logits."""
    return torch.ops.clipchat.gpt2_step(h, params, kv, start, heads, scales, eps)


def build(directory: Path) -> Path:
    """Build the kernel under `directory` (unless the build there is up to date) and load it into this process;
    the library's path. OSError, in the compiler's words, where it cannot be built."""
    if not is_x86_64():  # its intrinsics are x86's (any x86-64 CPU may build it)
        raise OSError(f"the kernel is for x86-64 CPUs, this is {platform.machine()}")
    from torch.utils import cpp_extension  # imports setuptools: only where something is built

    target = library_path(directory).parent
    target.mkdir(parents=True, exist_ok=True)
    try:
        path = cpp_extension.load(
            name=NAME,
            sources=[str(SOURCE)],
            extra_cflags=list(CFLAGS),
            build_directory=str(target),
            is_python_module=False,
        )
    except RuntimeError as error:  # a failed build ("Error building extension ...: <ninja's output>"), no ninja
        raise OSError(_last_words(str(error))) from error
    log.info("built the bfloat16 one-row kernel: %s", path)
    return Path(path)


def _last_words(message: str) -> str:
    return message if len(message) <= BUILD_ERROR_CHARS else "..." + message[-BUILD_ERROR_CHARS:]


if __name__ == "__main__":  # python -m vision.fast.bf16_rows [DIR]: build ahead, e.g. into an image's prebuilt_dir()
    logging.basicConfig(level=logging.INFO)
    try:
        print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else prebuilt_dir()))
    except OSError as error:  # an image built for arm64, say: the bot then runs on oneDNN alone
        print(f"not built: {error}")
        sys.exit(0 if not is_x86_64() else 1)
