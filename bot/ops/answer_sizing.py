"""`clipchat bench`'s answer rows: how soon the configured answer model answers a follow-up on this machine, and
the memory the whole model set holds.

Each question takes the bot's own path for a private chat: `LocalModels.answer_stream` on the model thread, the
photo's facts as `describe` made them and, for an answer model that sees images, the photo itself, downscaled as
`core/pixels` sends it. The time to the first draft is what a user waits before words appear; the whole answer
is the checked reply. One user asks at a time: answers run one at a time on the model thread, so more users
only queue behind each other. Questions that CLIP's routes answer have no drafts and are counted apart.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dialogue import Answer, Conversation
from dialogue.routing import RouteKind

from ..engine import AnswerRequest, DescribeRequest, Draft, LocalModels
from ..engine.served import downscaled

# Follow-ups whose answers are not in the caption: where a model that sees the photo earns its cost.
QUESTIONS = (
    "tell me about the background",
    "where is it in the picture?",
    "is anything written on it?",
    "describe the object in detail",
)
WARM_UP = 2


@dataclass(frozen=True)
class AnswerSample:
    questions: int
    by_answer_model: int  # questions the answer model wrote (the rest: CLIP's routes, no drafts)
    questions_per_s: float
    first_p50_ms: float | None  # to the first draft; None when no answer was drafted
    first_p95_ms: float | None
    whole_p50_ms: float
    whole_p95_ms: float
    sees_images: bool
    peak_rss_mb: float  # the process's most resident memory so far: every model of the set, loaded and used


async def measure_answers(models: LocalModels, photos: Sequence[bytes], count: int) -> AnswerSample:
    """`count` questions about `photos` (each described first, as the bot does), after a warm-up."""
    shown = photos[: max(1, min(len(photos), 4))]
    facts = [await models.describe(DescribeRequest(data)) for data in shown]
    sent = [downscaled(data, models.limits) if models.sees_images else None for data in shown]

    async def ask(number: int) -> tuple[float | None, float, Answer]:
        request = AnswerRequest(
            Conversation(facts[number % len(facts)]), QUESTIONS[number % len(QUESTIONS)], photo=sent[number % len(sent)]
        )
        started, first = time.perf_counter(), None
        answer: Answer | None = None
        async for event in models.answer_stream(request):
            if isinstance(event, Draft):
                first = first if first is not None else time.perf_counter() - started
            else:
                answer = event
        assert answer is not None  # a stream ends with its answer
        return first, time.perf_counter() - started, answer

    for number in range(WARM_UP):  # first calls load the answer model and warm its kernels: not measured
        await ask(number)
    started = time.perf_counter()
    results = [await ask(number) for number in range(count)]
    wall = time.perf_counter() - started
    firsts = [first for first, _, answer in results if first is not None and answer.route == RouteKind.OPEN]
    wholes = [whole for _, whole, _ in results]
    return AnswerSample(
        questions=count,
        by_answer_model=sum(answer.route == RouteKind.OPEN for _, _, answer in results),
        questions_per_s=count / wall,
        first_p50_ms=_ms(statistics.median(firsts)) if firsts else None,
        first_p95_ms=_ms(float(np.percentile(firsts, 95))) if firsts else None,
        whole_p50_ms=_ms(statistics.median(wholes)),
        whole_p95_ms=_ms(float(np.percentile(wholes, 95))),
        sees_images=models.sees_images,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux reports KiB
    )


def answer_lines(sample: dict) -> list[str]:
    first = (
        f"first draft p50 {sample['first_p50_ms']:.0f} ms, p95 {sample['first_p95_ms']:.0f} ms"
        if sample["first_p50_ms"] is not None
        else "no answer was drafted"
    )
    model = "sees the photo" if sample["sees_images"] else "reads the caption and tags"
    return [
        f"answers (the answer model {model}): {sample['questions']} follow-ups, one at a time, "
        f"{sample['by_answer_model']} written by the answer model",
        f"  {sample['questions_per_s']:.2f} questions/s; {first}; whole answer p50 {sample['whole_p50_ms']:.0f} ms, "
        f"p95 {sample['whole_p95_ms']:.0f} ms",
        f"  peak resident memory {sample['peak_rss_mb']:.0f} MB (every model of the set, loaded and used)",
    ]


def _ms(seconds: float) -> float:
    return 1000 * seconds
