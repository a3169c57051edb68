"""What the bot measures, for Prometheus: every metric, defined once, in one registry of clipchat's own.

    from clipchat.metrics import STAGE_SECONDS
    with STAGE_SECONDS.labels("download").time():
        ...

Why one module-level registry and not one per application: the measurements happen in every layer
(a database write in `storage`, CLIP's pass in `vision`, a batch in `bot/engine`), and handing an
application's registry down to each of them would thread a parameter through every call on the way
for nothing but counting. So the metric objects live here, in the lowest package every layer may
import, each layer records with one line, and the adapter serves `REGISTRY` over HTTP. It is not
prometheus_client's global registry, so importing a library that registers there (or two copies of
our server) never collides with ours. The cost: two bots in one process (tests) add into the same
counters, so tests read deltas; gauges are moved with inc/dec, never set, so they add up too.

Label values are always from a fixed set the code chooses (an update's kind, an exception's class
name, a stage): never anything a user typed, so the number of series stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # process_resident_memory_bytes, process_cpu_seconds_total, ...

# 1 ms (a cached database read) .. 60 s (a download from a slow Bot API server, a queued batch)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STAGES = ("download", "decode", "clip", "caption", "answer", "database")

UPDATES = Counter(
    "clipchat_updates",
    "Updates received from Telegram, by kind (photo, album_photo, "
    "document_image, text, command_<name>, callback, channel_post, edited, ...).",
    ["kind"],
    registry=REGISTRY,
)
UPDATES_DROPPED = Counter(
    "clipchat_updates_dropped",
    "Updates dropped because their sender's queue was full (the sender was asked to slow down).",
    registry=REGISTRY,
)
REPLIES = Counter(
    "clipchat_replies",
    "Messages the bot sent or edited, by kind (text, photo, edit_caption, edit_text, callback_answer, error).",
    ["kind"],
    registry=REGISTRY,
)
STAGE_SECONDS = Histogram(
    "clipchat_stage_seconds",
    "Time spent in each stage of the work: download (from "
    "Telegram), decode (one photo, beside the model thread), clip (image encoding, per batch), "
    "caption (caption decoding, per batch), answer (one question's answer), database (a write with its retries, "
    "or a read).",
    ["stage"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "clipchat_batch_size",
    "Requests run through the models together, per batch, by operation.",
    ["operation"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
    registry=REGISTRY,
)
MODEL_QUEUE = Gauge(
    "clipchat_model_queue_depth",
    "Requests waiting for the model thread, by operation.",
    ["operation"],
    registry=REGISTRY,
)
DECODE_QUEUE = Gauge(
    "clipchat_decode_queue_depth",
    "Photos being decoded, or waiting for a decoding thread or for memory to decode in.",
    registry=REGISTRY,
)
UPDATE_QUEUE = Gauge(
    "clipchat_update_queue_depth",
    "Updates waiting behind an earlier update of the same sender (each sender's updates run one at a time, in order).",
    registry=REGISTRY,
)
ERRORS = Counter(
    "clipchat_errors", "Errors that reached the bot's error handler, by exception class.", ["error"], registry=REGISTRY
)
MODEL_BUSY = Counter(
    "clipchat_model_busy_seconds",
    "Seconds the model thread spent running batches, by operation (its rate is the model thread's utilisation).",
    ["operation"],
    registry=REGISTRY,
)
SEND_WAIT = Histogram(
    "clipchat_send_wait_seconds",
    "How long each message to a chat waited before Telegram got "
    "it: the rate limiter's spacing and flood-control (429 retry_after) pauses.",
    buckets=(0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)

# The answer backends: `served` (a model server behind an OpenAI-compatible API) and `local` (the in-process
# answer path it falls back to); the error kinds are bot/engine/served's `Failure` values.
ANSWER_BACKENDS = ("served", "local")
ANSWER_SECONDS = Histogram(
    "clipchat_answer_backend_seconds",
    "Time to an open question's answer, by backend: served (the model server, its retries and CLIP's check "
    "included) or local (the fallback while the server is unavailable).",
    ["backend"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
ANSWER_ERRORS = Counter(
    "clipchat_answer_backend_errors",
    "Failed calls to an answer backend, by backend and kind (rate_limited, server_error, timeout, connection, "
    "refused, saturated, circuit_open); a retried call counts once per failed try.",
    ["backend", "kind"],
    registry=REGISTRY,
)
ANSWER_TOKENS = Counter(
    "clipchat_answer_backend_tokens",
    "Tokens an answer backend reported using (its `usage`), by backend and direction (prompt, completion).",
    ["backend", "direction"],
    registry=REGISTRY,
)

for _stage in STAGES:  # every stage shows from the start, as a zero rather than a gap in the graphs
    STAGE_SECONDS.labels(_stage)
for _backend in ANSWER_BACKENDS:
    ANSWER_SECONDS.labels(_backend)


@dataclass(frozen=True)
class Batches:
    """What `BATCH_SIZE` has recorded for one operation: how many batches ran, the requests in them, and how many
    batches held at most each bucket's size. The registry counts for the whole process: compare two readings."""

    count: int
    requests: int
    at_most: dict[float, int]  # a bucket's upper bound: batches of at most that many requests

    def since(self, earlier: Batches) -> Batches:
        """The batches run between `earlier` and this reading."""
        return Batches(
            self.count - earlier.count,
            self.requests - earlier.requests,
            {size: n - earlier.at_most.get(size, 0) for size, n in self.at_most.items()},
        )

    def larger_than(self, size: int) -> int:
        """How many batches held more than `size` requests (`size` one of the buckets' bounds)."""
        return self.count - self.at_most[size]

    @property
    def mean(self) -> float:
        return self.requests / self.count if self.count else 0.0


def batches_run(operation: str) -> Batches:
    """Read `BATCH_SIZE` for one operation (the batcher's name: "describe", "classify", ...)."""
    count = requests = 0
    at_most: dict[float, int] = {}
    for sample in (sample for metric in BATCH_SIZE.collect() for sample in metric.samples):
        if sample.labels.get("operation") != operation:
            continue
        if sample.name.endswith("_count"):
            count = int(sample.value)
        elif sample.name.endswith("_sum"):
            requests = int(sample.value)
        elif sample.name.endswith("_bucket"):
            at_most[float(sample.labels["le"])] = int(sample.value)
    return Batches(count, requests, at_most)
