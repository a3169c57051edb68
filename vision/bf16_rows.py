"""A few rows of bfloat16 through a linear layer at the speed of reading its weight (kernels/bf16_rows.cpp).

A caption step for one photo multiplies one row by each of GPT-2's weight matrices, so its time is the
time to read them: 250 MB a token in bfloat16. On a 2-core Zen 4 oneDNN's packed product (packed_linear)
read them at 14-17 GB/s, while a plain reduction over the same tensors (`max`) streamed 23-30 GB/s; this
kernel read them at 23.6 GB/s against 23.1 for the reduction in the same run (GPT-2's 12 blocks and output layer,
median of 15). Its error against a float64 product is oneDNN's (the same mean over those layers). Neither
oneDNN nor MKL nor Inductor (16 GB/s, after 30 s of compiling) offered a faster one-row product, so it is
hand-written, about 80 lines.

    if bf16_rows.load(cache_dir):               # this CPU has AVX-512 BF16, and the kernel is built
        y = bf16_rows.linear(x, weight, bias)   # x (..., K) of at most MAX_ROWS rows, weight (N, K)

`load` compiles it once per source and PyTorch version with the system's C++ compiler into
`cache_dir/kernels` (a second or ten), or finds it built there, or under the environment's prefix
(`share/clipchat/kernels`, where `python -m vision.bf16_rows DIR` puts it when an image is built). Without the
CPU feature or a compiler it says why in the log once and returns False, and linears stay on oneDNN.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

MAX_ROWS = 3  # kMaxRows in the source: at 4 rows oneDNN was as fast (14.3-15.3 ms against 14.8-16.8 a token)
SOURCE = Path(__file__).parent / "kernels" / "bf16_rows.cpp"
BUILD_TIMEOUT_S = 300.0
_loaded: Path | None = None
_refused: str | None = None


def cpu_supports() -> bool:
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return platform.machine() in ("x86_64", "AMD64") and bool(probe and probe())


def library_name() -> str:
    """The built file's name: a new source or PyTorch version is a new file, never a stale one loaded."""
    key = hashlib.sha256(SOURCE.read_bytes() + torch.__version__.encode() + " ".join(_flags()).encode())
    return f"clipchat_bf16_rows_{key.hexdigest()[:16]}.so"


def prebuilt_dir() -> Path:
    return Path(sys.prefix) / "share" / "clipchat" / "kernels"


def _places(cache_dir: Path) -> list[Path]:
    """Where a built kernel may already be: the image's, this cache's, and the user's default cache (one build
    serves every cache directory on a machine)."""
    import platformdirs

    return [prebuilt_dir(), cache_dir / "kernels", Path(platformdirs.user_cache_dir("clipchat")) / "kernels"]


def load(cache_dir: Path) -> bool:
    """Make `linear` usable in this process (see the module's docstring); whether it is."""
    global _loaded, _refused
    if _loaded is not None:
        return True
    if _refused is not None:
        return False
    try:
        if not cpu_supports():
            raise OSError("this CPU has no AVX-512 BF16")
        path = next((d / library_name() for d in _places(cache_dir) if (d / library_name()).is_file()), None) \
            or build(cache_dir / "kernels")
        torch.ops.load_library(str(path))
    except (OSError, subprocess.SubprocessError, RuntimeError) as error:
        _refused = str(error)
        log.warning("bfloat16 one-row kernel unavailable (%s): GPT-2's steps stay on oneDNN, about 30%% slower "
                    "for a lone photo", _refused)
        return False
    _loaded = path
    log.info("bfloat16 one-row kernel loaded from %s", path)
    return True


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x (..., K) of at most MAX_ROWS rows, weight (N, K), bias (N,) or None, all bfloat16 -> (..., N)."""
    rows = x.reshape(-1, x.shape[-1]).contiguous()  # (M, K)
    return torch.ops.clipchat.bf16_rows_linear(rows, weight, bias).view(*x.shape[:-1], weight.shape[0])


def build(directory: Path) -> Path:
    """Compile the kernel into `directory` (atomically: a build racing this one leaves a whole file)."""
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        raise OSError("no C++ compiler (c++, g++ or $CXX) to build it with")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / library_name()
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        out = Path(scratch) / target.name
        done = subprocess.run([compiler, str(SOURCE), "-o", str(out), *_flags()], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S)
        if done.returncode != 0:
            raise OSError(f"{compiler} failed: {done.stderr.strip()[-1000:]}")
        os.replace(out, target)
    log.info("built the bfloat16 one-row kernel: %s", target)
    return target


def _flags() -> list[str]:
    root = Path(torch.__file__).parent
    abi = int(torch.compiled_with_cxx11_abi())
    return ["-O3", "-std=c++20", "-shared", "-fPIC", "-fopenmp", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
            f"-I{root / 'include'}", f"-I{root / 'include' / 'torch' / 'csrc' / 'api' / 'include'}",
            f"-L{root / 'lib'}", "-lc10", "-ltorch_cpu",
            f"-Wl,-rpath,{root / 'lib'}"]


if __name__ == "__main__":  # python -m vision.bf16_rows [DIR]: build ahead, e.g. into an image's prebuilt_dir()
    logging.basicConfig(level=logging.INFO)
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else prebuilt_dir()))
