"""FLOPs per photo and the machine's ceiling, so efficiency means the fraction of the possible.

PyTorch's FLOP counter sees the ops that run, and misses three: with the
`nn.MultiheadAttention` fast path on (inference mode, open_clip's ViT) a whole block
runs as one fused kernel it does not know; on a CPU attention itself runs as
`_scaled_dot_product_flash_attention_for_cpu`, which its table lacks; and it counts the
packed linears' oneDNN kernel (`vision.fast.packed_linear`) as no work at all. A ViT-B/32
image counted 5.9 GFLOP of the 8.8 a hand count gives. Counting here turns the fast
path off, counts the CPU attention kernel as the other attention kernels are
counted and a packed linear as the matmul it is; `vit_flops` is the hand count a test holds the counter to.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable

import torch


@contextlib.contextmanager
def attention_fast_path(enabled: bool):
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def count_flops(work: Callable[[], object]) -> float:
    """FLOPs of `work()` as its ops run, attention included (fast path off while counting)."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_attention(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    def packed_linear(input_shape, *args, out_shape=None, **kwargs) -> int:  # ops FlopCounterMode does not know
        return 2 * input_shape[-1] * math.prod(out_shape)

    from vision.fast.packed_linear import linear_ops

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_attention}
    mapping |= dict.fromkeys(linear_ops(), packed_linear)  # oneDNN's packed product, bf16_rows' kernel
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with attention_fast_path(False), counter:
        work()
    return float(counter.get_total_flops())


def vit_flops(visual) -> float:
    """Hand count for one image through an open_clip VisionTransformer: 2 FLOPs per multiply-add.

    Per layer and token: q, k, v and output projections 4·D², MLP 2·D·(mlp width); per layer,
    attention scores and their weighted sum 2·N²·D. Plus the patch embedding and the projection.
    """
    width = visual.conv1.out_channels
    patch = visual.conv1.kernel_size[0]
    side = visual.image_size[0] // patch
    tokens = side * side + 1  # patches and the class token
    blocks = visual.transformer.resblocks
    hidden = blocks[0].mlp.c_fc.out_features
    per_layer = tokens * (4 * width * width + 2 * width * hidden) + 2 * tokens * tokens * width
    patches = side * side * 3 * patch * patch * width
    projection = width * visual.proj.shape[1] if visual.proj is not None else 0
    return 2.0 * (len(blocks) * per_layer + patches + projection)


def matmul_rate(dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 10) -> float:
    """This machine's dense matmul FLOP/s in `dtype`: the ceiling that dtype's work is measured against.

    The faster of PyTorch's matmul and oneDNN's with the weight packed (`vision.fast.packed_linear`, what clipchat
    runs): on AMD CPUs PyTorch's float32 matmul goes to MKL, which does not use AVX-512 there and runs at less
    than half oneDNN's rate, so a ceiling from it alone put clipchat above 100% efficiency (docs/benchmarks.md).
    """
    from vision.fast.packed_linear import PackedLinear, packed_dtypes

    a = torch.randn(size, size, dtype=dtype)
    ways = [lambda: a @ a]
    if dtype in packed_dtypes():  # what pack_linears packs for clipchat
        packed = PackedLinear(torch.nn.Linear(size, size, bias=False, dtype=dtype).eval())
        ways.append(lambda: packed(a))
    best = float("inf")
    with torch.inference_mode():
        for way in ways:
            for _ in range(2):
                way()
            for _ in range(3):  # the best of three: the ceiling, not a typical moment
                started = time.perf_counter()
                for _ in range(repeats):
                    way()
                best = min(best, time.perf_counter() - started)
    return 2 * size**3 * repeats / best


def ceiling_seconds(flops_by_dtype: dict[str, float], rates: dict[str, float]) -> float:
    """The least time one photo's work could take: each dtype's FLOPs at that dtype's matmul rate."""
    return sum(flops / rates[dtype] for dtype, flops in flops_by_dtype.items())
