"""How soon a private chat sees the first draft of an answer, and how many drafts an answer takes.

    python -m bench.drafts WORLD_DIR [--questions 20] [--tokens 60]

On the test world's answer model (its tiny chat model), through `LocalModels.answer_stream` as the bot asks:
the time from the question to the first draft and to the checked answer. Then answers forced to `--tokens`
tokens (end of turn suppressed until then, four candidates sampled as the bot does): when each of the first
candidate's tokens was written, and how many drafts the bot's pacing (one every `draft_every_ms` at most, the
first at once) would send while they are written.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path

import torch

from bot.engine import AnswerRequest, Draft, LocalModels, ModelFeatures
from dialogue import Conversation
from dialogue.conversation import AnswerOptions
from dialogue.generation import MIN_ANSWER_TOKENS, build_prompt
from vision import load_image, load_models

QUESTIONS = ("tell me about the shape", "what is the background like?", "is it big?")


class TokenTimes:
    """`generate`'s streamer: when each token of the first sequence arrived (after the prompt)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.prompt_passed = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_passed:
            self.prompt_passed = True
            return
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def paced(times: list[float], every: float) -> int:
    """Drafts sent for text that grows at `times`: the first at once, then none sooner than `every` after the last."""
    sent, due = 0, float("-inf")
    for moment in times:
        if moment >= due:
            sent, due = sent + 1, moment + every
    return sent


async def streamed(local: LocalModels, facts, count: int) -> tuple[list[float], list[float]]:
    firsts, answers = [], []
    for number in range(count):
        question = QUESTIONS[number % len(QUESTIONS)]
        started, first = time.perf_counter(), None
        async for event in local.answer_stream(AnswerRequest(Conversation(facts[number % len(facts)]), question)):
            if isinstance(event, Draft) and first is None:
                first = time.perf_counter() - started
        answers.append(time.perf_counter() - started)
        if first is not None:
            firsts.append(first)
    return firsts, answers


async def in_process(models, facts, count: int) -> tuple[list[float], list[float]]:
    local = LocalModels(ModelFeatures(models), timeout=60)  # its batchers belong to this event loop
    try:
        await streamed(local, facts, 2)  # warm up
        return await streamed(local, facts, count)
    finally:
        await local.close()


@torch.inference_mode()
def forced(models, facts, count: int, tokens: int, every: float) -> tuple[list[float], list[float], list[int]]:
    model = models.answerer.get()
    firsts, totals, drafts = [], [], []
    for number in range(count):
        conversation = Conversation(facts[number % len(facts)])
        prompt = build_prompt(model.tokenizer, conversation, QUESTIONS[number % 3], model.window - MIN_ANSWER_TOKENS)
        ids = model.tokenizer(prompt, return_tensors="pt", add_special_tokens=not model.chat).input_ids
        clock = TokenTimes()
        started = time.perf_counter()
        model.lm.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            top_p=0.9,
            temperature=0.8,
            num_return_sequences=AnswerOptions().candidates,
            min_new_tokens=tokens,
            max_new_tokens=tokens,
            no_repeat_ngram_size=3,
            repetition_penalty=1.2,
            eos_token_id=model.stop_ids,
            pad_token_id=model.pad_id,
            streamer=clock,
        )
        firsts.append(clock.times[0] - started)
        totals.append(clock.times[-1] - started)
        drafts.append(paced(clock.times, every))
    return firsts, totals, drafts


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.drafts")
    parser.add_argument("world", help="the test world's folder (CLIPCHAT_TEST_WORLD)")
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--every-ms", type=int, default=300, help="the bot's draft_every_ms")
    args = parser.parse_args()
    models = load_models(args.world, device="cpu")
    heldout = sorted((Path(args.world) / "data" / "heldout").glob("*.png"))[:10]
    facts = models.describe([load_image(path.read_bytes()) for path in heldout])
    models.answerer.get()
    firsts, answers = asyncio.run(in_process(models, facts, args.questions))
    forced(models, facts, 2, args.tokens, args.every_ms / 1000)  # warm up
    token_firsts, totals, drafts = forced(models, facts, args.questions, args.tokens, args.every_ms / 1000)
    med = statistics.median
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"torch threads: {torch.get_num_threads()}; load average {load}; {args.questions} questions each")
    print(
        f"answers as the bot asks them: first draft after {med(firsts) * 1000:.0f} ms (median; "
        f"{len(firsts)} of {args.questions} drafted), checked answer after {med(answers) * 1000:.0f} ms"
    )
    print(
        f"{args.tokens}-token answers, 4 candidates: first token after {med(token_firsts) * 1000:.0f} ms, "
        f"last after {med(totals) * 1000:.0f} ms (median); drafts at most every {args.every_ms} ms: "
        f"median {med(drafts)}, range {min(drafts)}-{max(drafts)}"
    )


if __name__ == "__main__":
    main()
