"""A few rows of bfloat16 through a linear layer at the speed of reading its weight (kernels/bf16_rows.cpp).

A caption step for one photo multiplies one row by each of GPT-2's weight matrices, so its time is the
time to read them: 250 MB a token in bfloat16. Measured on a 2-core Zen 4 (medians of 15, two runs), GPT-2's
12 blocks and output layer at one row took 15.3-17.1 ms through oneDNN's packed product (packed_linear) and
8.7-9.3 ms through this kernel, while merely reading the weights (`max` over them) took 7.4-7.5 ms. At two rows
9.2-10.3 against 15.7-19.1, at three 10.1-12.2 against 13.4-15.3; at four oneDNN was as fast, so it takes over
(MAX_ROWS). A whole photo through the benchmark's bfloat16 clipchat pipeline took 282-300 ms against 420-436.
Its error against a float64 product is oneDNN's. Neither oneDNN nor MKL nor Inductor (16 GB/s, after 30 s of
compiling) offered a faster few-row product, so it is hand-written: one loop of AVX-512 BF16 dot products.

    if bf16_rows.load(cache_dir):               # this CPU has AVX-512 BF16, and the kernel is built
        y = bf16_rows.linear(x, weight, bias)   # x (..., K) of at most MAX_ROWS rows, weight (N, K)

The same library holds `gpt2_step`, a whole GPT-2 step for one to three captions over this kernel in one
call (vision/gpt2_steps.py says when it runs).

`load` finds it built for this source and PyTorch under the environment's prefix (`share/clipchat/kernels`,
where `python -m vision.fast.bf16_rows` puts it while an image is built), in `cache_dir/kernels` or in the user's
cache, or compiles it into `cache_dir/kernels` with the system's C++ compiler (about ten seconds, once).
Without the CPU feature or a compiler it says why in the log once and returns False; linears stay on oneDNN.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

log = logging.getLogger(__name__)

MAX_ROWS = 3  # kMaxRows in the source: at 4 rows oneDNN was as fast (14.3-15.3 ms against 14.8-16.8 a token)
SOURCE = Path(__file__).parent / "kernels" / "bf16_rows.cpp"
BUILD_TIMEOUT_S = 300.0
_loaded: Path | None = None
_refused: str | None = None
_loading = threading.Lock()


def cpu_supports() -> bool:
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return platform.machine() in ("x86_64", "AMD64") and bool(probe and probe())


def library_name() -> str:
    """The built file's name: a new source, build recipe or PyTorch (version, C++ ABI, installation) is a new
    file, never a stale one loaded; one user cache serves several environments."""
    torch_build = f"{torch.__version__} {torch.compiled_with_cxx11_abi()} {Path(torch.__file__).parent}"
    key = hashlib.sha256(SOURCE.read_bytes() + Path(__file__).read_bytes() + torch_build.encode())
    return f"clipchat_bf16_rows_{key.hexdigest()[:16]}.so"


def prebuilt_dir() -> Path:
    return Path(sys.prefix) / "share" / "clipchat" / "kernels"


def _places(cache_dir: Path) -> list[Path]:
    """Where a built kernel may already be: the image's, this cache's, and the user's default cache (one build
    serves every cache directory on a machine)."""
    import platformdirs

    return [prebuilt_dir(), cache_dir / "kernels", Path(platformdirs.user_cache_dir("clipchat")) / "kernels"]


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
            raise OSError("this CPU has no AVX-512 BF16")
        path = next((d / library_name() for d in _places(cache_dir) if (d / library_name()).is_file()), None)
        if path is not None:
            try:
                torch.ops.load_library(str(path))
            except OSError:  # a copy found that does not load (damaged, say): build one of our own
                log.warning("cannot load %s; building the kernel again", path, exc_info=True)
                path = None
        if path is None:
            path = build(cache_dir / "kernels")
            torch.ops.load_library(str(path))
    except (OSError, subprocess.SubprocessError, RuntimeError) as error:
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
    """Compile the kernel into `directory` (atomically: a build racing this one leaves a whole file)."""
    if platform.machine() not in ("x86_64", "AMD64"):  # its intrinsics are x86's (any x86-64 CPU may build it)
        raise OSError(f"the kernel is for x86-64 CPUs, this is {platform.machine()}")
    compiler = shlex.split(os.environ.get("CXX", "")) or [shutil.which("g++") or shutil.which("c++") or ""]
    if not compiler[0]:
        raise OSError("no C++ compiler (g++, c++ or $CXX) to build it with")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / library_name()
    root = Path(torch.__file__).parent
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        objects, out = Path(scratch) / "bf16_rows.o", Path(scratch) / target.name
        # OpenMP's calls are left for PyTorch's own runtime to answer: linking -fopenmp would name the system's
        # libgomp, a second runtime (its own threads) wherever PyTorch's wheel ships a renamed one
        _run(
            [
                *compiler,
                "-c",
                str(SOURCE),
                "-o",
                str(objects),
                "-O3",
                "-std=c++20",
                "-fPIC",
                "-fopenmp",
                f"-D_GLIBCXX_USE_CXX11_ABI={int(torch.compiled_with_cxx11_abi())}",
                f"-I{root / 'include'}",
                f"-I{root / 'include' / 'torch' / 'csrc' / 'api' / 'include'}",
            ],
            compiler,
        )
        _run(
            [
                *compiler,
                "-shared",
                str(objects),
                "-o",
                str(out),
                f"-L{root / 'lib'}",
                "-lc10",
                "-ltorch_cpu",
                f"-Wl,-rpath,{root / 'lib'}",
            ],
            compiler,
        )
        os.replace(out, target)
    log.info("built the bfloat16 one-row kernel: %s", target)
    return target


def _run(command: list[str], compiler: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=BUILD_TIMEOUT_S)
    if done.returncode != 0:
        raise OSError(f"{' '.join(compiler)} failed: {done.stderr.strip()[-1000:]}")


if __name__ == "__main__":  # python -m vision.fast.bf16_rows [DIR]: build ahead, e.g. into an image's prebuilt_dir()
    logging.basicConfig(level=logging.INFO)
    try:
        print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else prebuilt_dir()))
    except OSError as error:  # an image built for arm64, say: the bot then runs on oneDNN alone
        print(f"not built: {error}")
        sys.exit(0 if platform.machine() not in ("x86_64", "AMD64") else 1)
