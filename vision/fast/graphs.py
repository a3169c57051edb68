"""Greedy steps and CLIP's image tower at fixed shapes, replayed as CUDA graphs on a GPU.

    decode(captioner, clip, DecodingOptions(graphs=True))  # each step: `StaticStep`, through `vision.fast.choose_step`
    models.describe_pixels(pixels, DecodingOptions(graphs=True))  # CLIP's tower too: `static_image_features`

At batch 1 a caption is launch-bound: each GPT-2 step is a few hundred small kernels, and the GPU waits
for Python (docs/benchmarks.md has the figures). A CUDA graph launches a whole step at once, but only at the
shapes and memory addresses it was captured with. So here:

- the batch is padded up to a bucket (BUCKETS) and the padded rows are dropped from the logits;
- the KV cache is transformers' StaticCache, allocated once for the prefix and every token fed back,
  whose length lives in a device tensor, so every step has the same shapes and addresses;
- a step (GPT-2 forward, logits to float32) reads its token from, and writes its logits into, buffers
  made before capture.

The greedy loop itself (argmax, scores, stops) is `vision.decoding`'s, the one every step runs under; it
asks whether every caption has ended only every CHECK_EVERY steps, since each question waits for the GPU.

Manual capture (torch.cuda.CUDAGraph), not torch.compile(mode="reduce-overhead"): a captured
graph replays the very kernels the uncaptured step launches, so the CPU tests of the uncaptured
step check the arithmetic the GPU replays. Inductor would fuse the step into new kernels that
reduce in another order, so its tokens could drift from the eager path's, and it compiles for
minutes per bucket.

On a CPU nothing is captured: the same fixed-shape steps run as they are. StaticCache and CUDA graphs are
public; what a replay needs of the cache's internals (each layer's `cumulative_length`, a device tensor
advanced in place, and the constructor's parameters) is not, so `new_static_cache` checks both and refuses
a transformers whose StaticCache cannot be replayed.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable

import torch

from clipchat.errors import InvalidConfig

from ..models.language_model import cache_keyword

BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# Steps between checks that every caption has ended: a check waits for the GPU to drain, so checking
# every step would leave it idle while Python launches the next graph. Extra steps past every row's stop
# only add padding, which the greedy loop drops.
CHECK_EVERY = 4
WARMUP_STEPS = 2  # lazy initialisation (cuBLAS handles, workspaces) must happen before capture


def bucket(count: int) -> int:
    """The smallest bucket that holds `count` rows."""
    for size in BUCKETS:
        if size >= count:
            return size
    raise ValueError(f"{count} rows exceed the largest bucket, {BUCKETS[-1]}: split them first.")


def new_static_cache(lm, max_len: int):
    """transformers' StaticCache for `lm` holding `max_len` positions; InvalidConfig where this version's cannot
    be replayed.

    Before 4.56 the constructor sized the cache up front (config, max_batch_size, max_cache_len, device, dtype)
    and the model took `cache_position` at every step, a Python-side position; the layered caches of 4.56+ and 5.x
    take (config, max_cache_len), size themselves at their first update, and keep their length in a device tensor
    that advances in place: what a replayed step needs.
    """
    import transformers

    found = f"transformers {transformers.__version__}"
    static_cache = getattr(transformers, "StaticCache", None)
    parameters = inspect.signature(static_cache.__init__).parameters if static_cache else {}
    if "max_cache_len" not in parameters or {"max_batch_size", "batch_size"} & set(parameters):
        raise InvalidConfig(
            f"graphs=True needs transformers' layered StaticCache(config, max_cache_len), as in 5.x; "
            f"{found} has {'another constructor' if static_cache else 'no StaticCache'}."
        )
    if "cache_position" in inspect.signature(lm.forward).parameters:
        raise InvalidConfig(
            f"graphs=True needs a language model that reads positions from its cache; {found}'s "
            f"{type(lm).__name__} takes cache_position at every step."
        )
    assert static_cache is not None  # refused above: no StaticCache has no max_cache_len
    cache = static_cache(config=lm.config, max_cache_len=max_len)
    if not all(isinstance(getattr(layer, "cumulative_length", None), torch.Tensor) for layer in cache.layers):
        raise InvalidConfig(f"graphs=True needs a StaticCache whose length is a device tensor; {found}'s is not.")
    return cache


def capture(step: Callable[[], None], device: torch.device, pool, warmups: int = WARMUP_STEPS) -> torch.cuda.CUDAGraph:
    """Run `step` `warmups` times on a side stream (as capture requires), then record it; recording runs nothing."""
    with torch.cuda.device(device):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmups):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            step()
    return graph


class _BucketStep:
    """One bucket's steps: a static KV cache, fixed token and logits buffers and, on CUDA, the captured step.

    Each step is what the plain step (`vision.decoding.steps.ForwardStep`) computes, into the same buffers
    every time.
    """

    def __init__(self, lm, batch: int, length: int, pool) -> None:
        device = next(lm.parameters()).device
        self.lm, self.batch, self.length, self.pool = lm, batch, length, pool
        self.keyword = cache_keyword(lm)
        self.cache = new_static_cache(lm, length)
        self.token = torch.zeros(batch, 1, dtype=torch.long, device=device)  # (b, 1) the next step's input
        self.logits: torch.Tensor | None = None  # (b, vocab) float32, made at the first prefix, before any capture
        self.graph: torch.cuda.CUDAGraph | None = None

    def first(self, prefix: torch.Tensor) -> torch.Tensor:
        """(n, P, D) prefix, n <= bucket -> (n, vocab) float32 logits after it; the cache starts again."""
        padded = torch.cat([prefix, prefix.new_zeros(self.batch - len(prefix), *prefix.shape[1:])])  # (b, P, D)
        self._start(padded)
        fed_back = self.length - prefix.shape[1]  # tokens the cache has room for after the prefix
        if self.pool is not None and self.graph is None and fed_back > 0:
            # at most `fed_back` warm-up steps: the cache has room for no more
            self.graph = capture(self._step, prefix.device, self.pool, min(WARMUP_STEPS, fed_back))
            self._start(padded)  # the warm-up ran steps: start again
        return self._logits()[: len(prefix)]

    def next(self, token: torch.Tensor) -> torch.Tensor:
        """(n,) tokens -> (n, vocab) float32 logits after them. Padded rows go on from whatever they hold:
        each row is its own sequence, so they cannot touch the real ones."""
        self.token[: len(token), 0].copy_(token)
        if self.graph is not None:
            self.graph.replay()
        else:
            self._step()
        return self._logits()[: len(token)]

    def _logits(self) -> torch.Tensor:
        if self.logits is None:
            raise RuntimeError("a bucket step's next() came before its first()")
        return self.logits

    def _start(self, prefix: torch.Tensor) -> None:
        self.cache.reset()  # zeroed in place: the captured step keeps reading the same addresses
        out = self.lm(inputs_embeds=prefix, use_cache=True, logits_to_keep=1, **{self.keyword: self.cache})
        if self.logits is None:
            self.logits = out.logits.new_empty(self.batch, out.logits.shape[-1], dtype=torch.float32)
        self.logits.copy_(out.logits[:, -1])  # in float32, as the plain step gives them

    def _step(self) -> None:
        out = self.lm(input_ids=self.token, use_cache=True, **{self.keyword: self.cache})
        self._logits().copy_(out.logits[:, -1])


class StaticStep:
    """Greedy steps for any number of captions at fixed shapes: up to the largest bucket at a time, each
    chunk padded to its bucket and stepped by a `_BucketStep`, kept (per language model, bucket, length and
    chunk) for the next caption.

    The logits a step returns are its buffers' own, valid until the next step: the greedy loop reads them
    before it steps again. Memory: each bucket step keeps a KV cache of 2 x layers x bucket x length x width;
    GPT-2 small at bucket 256 with a 10-token prefix and 30 tokens is 2 x 12 x 256 x 39 x 768 x 2 bytes =
    351 MiB in float16. The captured steps share one memory pool per language model: they run one at a time
    (the one model thread) and keep nothing in it between replays, since their results go to buffers made
    outside it.
    """

    def __init__(self, lm, batch: int, length: int) -> None:
        if lm not in _BUCKET_STEPS:
            _BUCKET_STEPS[lm] = {}
        kept = _BUCKET_STEPS[lm]
        on_gpu = next(lm.parameters()).device.type == "cuda"
        pool = _pool(lm) if on_gpu else None
        self.check_every = CHECK_EVERY if on_gpu else 1  # on a CPU a check waits for nothing
        self.parts = []
        for chunk, start in enumerate(range(0, batch, BUCKETS[-1])):
            key = (bucket(min(batch - start, BUCKETS[-1])), length, chunk)  # each chunk its own cache
            if key not in kept:
                kept[key] = _BucketStep(lm, key[0], length, pool)
            self.parts.append(kept[key])

    def first(self, prefix: torch.Tensor) -> torch.Tensor:
        return self._each(prefix, _BucketStep.first)

    def next(self, token: torch.Tensor) -> torch.Tensor:
        return self._each(token, _BucketStep.next)

    def _each(self, rows: torch.Tensor, call) -> torch.Tensor:
        if len(self.parts) == 1:
            return call(self.parts[0], rows)
        chunks = rows.split(BUCKETS[-1])
        return torch.cat([call(part, chunk) for part, chunk in zip(self.parts, chunks)])


class _Tower:
    """CLIP's image tower at one (bucket, C, H, W): a fixed pixel buffer and, on CUDA, the captured forward."""

    def __init__(self, encoder, batch: int, shape: tuple[int, ...], pool) -> None:
        self.model = encoder.model
        self.pixels = torch.zeros(batch, *shape, dtype=encoder.dtype, device=encoder.device)  # (b, C, H, W)
        self.features = torch.zeros(batch, encoder.dim, dtype=torch.float32, device=encoder.device)  # (b, D)
        self.graph = capture(self._forward, encoder.device, pool) if pool is not None else None

    def run(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, C, H, W), n <= bucket -> (n, D) float32. Rows past n keep the last batch's pixels: every
        image is its own row through the tower, so they cannot touch these."""
        self.pixels[: len(pixels)].copy_(pixels)  # the same cast to CLIP's dtype as the eager `.to`
        if self.graph is not None:
            self.graph.replay()
        else:
            self._forward()
        return self.features[: len(pixels)].clone()

    def _forward(self) -> None:
        self.features.copy_(self.model.encode_image(self.pixels).float())


class StaticTower:
    """An encoder's fixed-shape image towers, one per (bucket, pixel shape), made on first use."""

    def __init__(self, encoder) -> None:
        self.pool = torch.cuda.graph_pool_handle() if encoder.device.type == "cuda" else None
        self.towers: dict[tuple[int, ...], _Tower] = {}

    def embed(self, encoder, pixels: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) preprocessed pixels -> (N, D) float32 raw CLIP vectors, `encoder.batch_size` at a time."""
        chunks, most = [], min(encoder.batch_size, BUCKETS[-1])
        for start in range(0, len(pixels), most):
            batch = pixels[start : start + most].to(encoder.device)
            key = (bucket(len(batch)), *batch.shape[1:])
            if key not in self.towers:
                self.towers[key] = _Tower(encoder, key[0], key[1:], self.pool)
            chunks.append(self.towers[key].run(batch))
        return torch.cat(chunks)


# language model -> {(bucket, length, chunk): _BucketStep}, and its graphs' memory pool
_BUCKET_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_POOLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TOWERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # encoder -> StaticTower


def _pool(lm):
    if lm not in _POOLS:
        _POOLS[lm] = torch.cuda.graph_pool_handle()
    return _POOLS[lm]


@torch.inference_mode()
def static_image_features(encoder, pixels: torch.Tensor) -> torch.Tensor:
    """CLIP's image tower at fixed shapes: (N, C, H, W) -> (N, D) float32 raw vectors, as
    `ClipEncoder.embed_pixels(pixels, normalize=False)` gives them."""
    if len(pixels) == 0:
        return torch.empty(0, encoder.dim, device=encoder.device)
    if encoder not in _TOWERS:
        _TOWERS[encoder] = StaticTower(encoder)
    return _TOWERS[encoder].embed(encoder, pixels)
