"""Greedy decoding and CLIP's image tower at fixed shapes, replayed as CUDA graphs on a GPU.

    decode(captioner, clip, DecodingOptions(graphs=True))
    models.describe_pixels(pixels, DecodingOptions(graphs=True))  # CLIP's tower too

At batch 1 a caption is launch-bound: each GPT-2 step is a few hundred small kernels, and on an
H100 one photo took 115-140 ms, level with ClipCap's loop that has no KV cache at all: the GPU
waits for Python. A CUDA graph launches a whole step at once, but only at the shapes and memory
addresses it was captured with. So here:

- the batch is padded up to a bucket (BUCKETS) and the padded rows are dropped afterwards;
- the KV cache is transformers' StaticCache, allocated once for prefix + max_tokens positions,
  whose length lives in a device tensor, so every step has the same shapes and addresses;
- a step (GPT-2 forward, argmax, score, bookkeeping) writes into buffers made before capture.

Manual capture (torch.cuda.CUDAGraph), not torch.compile(mode="reduce-overhead"): a captured
graph replays the very kernels the uncaptured step launches, so the CPU tests of the uncaptured
step check the arithmetic the GPU replays. Inductor would fuse the step into new kernels that
reduce in another order, so its tokens could drift from the eager path's, and it compiles for
minutes per bucket.

On a CPU nothing is captured: the same fixed-shape loop runs as it is.
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
# only add padding, which `decoding._caption` drops.
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


class _Decoder:
    """One bucket's greedy loop: a static KV cache, fixed buffers and, on CUDA, the captured step.

    Every step does what `decoding.Greedy`'s eager loop does, op for op, but in place.
    """

    def __init__(self, lm, batch: int, prefix_length: int, max_tokens: int, stop_ids: torch.Tensor, pool) -> None:
        device = stop_ids.device
        self.lm, self.batch, self.max_tokens, self.stop_ids, self.pool = lm, batch, max_tokens, stop_ids, pool
        self.keyword = cache_keyword(lm)
        # the eager loop feeds at most max_tokens - 1 tokens back after the prefix
        self.cache = new_static_cache(lm, prefix_length + max_tokens - 1)
        self.token = torch.zeros(batch, 1, dtype=torch.long, device=device)  # (b, 1) the next step's input
        self.tokens = torch.zeros(batch, max_tokens, dtype=torch.long, device=device)  # (b, T) chosen so far
        self.scores = torch.zeros(batch, max_tokens, dtype=torch.float32, device=device)  # (b, T) their log-probs
        self.finished = torch.zeros(batch, dtype=torch.bool, device=device)  # (b,)
        self.column = torch.zeros(1, dtype=torch.long, device=device)  # (1,) where the next token goes
        self.graph: torch.cuda.CUDAGraph | None = None

    def run(self, prefix: torch.Tensor, real: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, P, D) prefix whose first `real` rows are photos -> (real, t) tokens and (real, t) log-probs."""
        self._start(prefix, real)
        if self.pool is not None and self.graph is None and self.max_tokens > 1:
            # at most max_tokens - 1 warm-up steps: the buffers have room for no more
            self.graph = capture(self._step, prefix.device, self.pool, min(WARMUP_STEPS, self.max_tokens - 1))
            self._start(prefix, real)  # the warm-up ran steps: start again
        produced = 1
        while produced < self.max_tokens:
            if produced % CHECK_EVERY == 0 and bool(self.finished.all()):
                break
            if self.graph is not None:
                self.graph.replay()
            else:
                self._step()
            produced += 1
        return self.tokens[:real, :produced].clone(), self.scores[:real, :produced].clone()

    def _start(self, prefix: torch.Tensor, real: int) -> None:
        self.cache.reset()  # zeroed in place: the captured step keeps reading the same addresses
        self.column.zero_()
        # padded rows count as finished from the start, so they never keep the loop going
        self.finished.copy_(torch.arange(self.batch, device=prefix.device) >= real)
        out = self.lm(inputs_embeds=prefix, use_cache=True, logits_to_keep=1, **{self.keyword: self.cache})
        self._advance(out.logits)

    def _step(self) -> None:
        out = self.lm(input_ids=self.token, use_cache=True, **{self.keyword: self.cache})
        self._advance(out.logits)

    def _advance(self, logits: torch.Tensor) -> None:
        logits = logits[:, -1].float()  # (b, vocab), in float32 as the eager loop scores them
        token = logits.argmax(dim=-1)  # (b,)
        chosen = logits.log_softmax(dim=-1).gather(1, token[:, None])[:, 0]  # (b,)
        self.tokens.index_copy_(1, self.column, token[:, None])
        self.scores.index_copy_(1, self.column, chosen.masked_fill(self.finished, float("-inf"))[:, None])
        self.finished |= torch.isin(token, self.stop_ids)
        self.token.copy_(token[:, None])
        self.column += 1


class StaticGreedy:
    """A captioner's fixed-shape decoders, one per (bucket, max_tokens), made on first use and then kept.

    Memory: each keeps a KV cache of 2 x layers x bucket x (prefix + max_tokens) x width; GPT-2 small at
    bucket 256 with a 10-token prefix and 30 tokens is 2 x 12 x 256 x 39 x 768 x 2 bytes = 351 MiB in float16.
    The captured steps share one memory pool: they run one at a time (the one model thread) and keep
    nothing in it between replays, since their results go to buffers made outside it.
    """

    def __init__(self, captioner) -> None:
        device = captioner.device
        self.stop_ids = torch.tensor(captioner.stop_ids, device=device)
        self.pool = torch.cuda.graph_pool_handle() if device.type == "cuda" else None
        self.decoders: dict[tuple[int, int], _Decoder] = {}

    def decode(self, captioner, clip: torch.Tensor, max_tokens: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(B, clip_dim) raw CLIP vectors -> per photo, (t,) tokens and (t,) log-probs (-inf after its stop)."""
        rows = []
        for start in range(0, len(clip), BUCKETS[-1]):
            prefix = captioner.prefix(clip[start : start + BUCKETS[-1]])  # (n, P, D)
            real, size = len(prefix), bucket(len(prefix))
            padded = torch.cat([prefix, prefix.new_zeros(size - real, *prefix.shape[1:])])  # (b, P, D)
            key = (size, max_tokens)
            if key not in self.decoders:
                self.decoders[key] = _Decoder(captioner.lm, size, prefix.shape[1], max_tokens, self.stop_ids, self.pool)
            tokens, scores = self.decoders[key].run(padded, real)
            rows.extend(zip(tokens, scores))
        return rows


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


_DECODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # captioner -> StaticGreedy
_TOWERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # encoder -> StaticTower


@torch.inference_mode()
def static_greedy(captioner, clip: torch.Tensor, max_tokens: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Greedy decoding at fixed shapes: per photo, its tokens and their log-probs, as `decoding.Greedy`'s."""
    if captioner not in _DECODERS:
        _DECODERS[captioner] = StaticGreedy(captioner)
    return _DECODERS[captioner].decode(captioner, clip, max_tokens)


@torch.inference_mode()
def static_image_features(encoder, pixels: torch.Tensor) -> torch.Tensor:
    """CLIP's image tower at fixed shapes: (N, C, H, W) -> (N, D) float32, as `ClipEncoder.embed_pixels`'s."""
    if len(pixels) == 0:
        return torch.empty(0, encoder.dim, device=encoder.device)
    if encoder not in _TOWERS:
        _TOWERS[encoder] = StaticTower(encoder)
    return _TOWERS[encoder].embed(encoder, pixels)
