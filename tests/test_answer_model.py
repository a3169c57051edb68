"""Open questions go to the answer model: the test world's tiny Llama-style chat model, or GPT-2 beside it.

The questions are phrasings the chat model was trained on (tests/world/chat_training.py); the photos
are held-out ones, described by the world's own models, so a right answer has to come from that
photo's facts. Answers are judged against the scene itself, not against the caption.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import replace

import pytest
import torch

from clipchat.facts import PhotoFacts
from dialogue import Conversation, answer
from dialogue.conversation import AnswerOptions
from dialogue.generation import answer_open, build_prompt, sample_answers
from tests.world.scenes import BACKGROUNDS, COLOURS, SHAPES, SIZES
from vision import load_models
from vision.catalog.model_sets import Ref
from vision.models.answer_model import load_answer_model

# Questions the routing leaves open (or that reach the open path), each with how to judge an answer.
EVALUATION_QUESTIONS = ("what is the background like?", "is it big?", "tell me about the shape")
RIGHT_RATE = 0.8


def judged_right(question: str, reply, scene) -> bool:
    """Right about what was asked, and an answer: neither the fallback nor the caption recited whole."""
    if "candidates" not in reply.details:  # "I'm not sure how to answer that ... What I can see is: <caption>"
        return False
    words = set(re.findall(r"[a-z]+", reply.text.lower()))
    if all(words & set(values) for values in (SIZES, COLOURS, SHAPES, BACKGROUNDS)):
        return False
    if "background" in question:
        return scene.background in words and not words & (set(BACKGROUNDS) - {scene.background})
    if "big" in question:  # "It is small." answers it; a yes or no, when given, must agree
        wrong_yes_no = {"no"} if scene.size == "large" else {"yes"}
        return scene.size in words and not words & (set(SIZES) - {scene.size}) and not words & wrong_yes_no
    return scene.shape in words and not words & (set(SHAPES) - {scene.shape})


# right_rate's figures in this process, by models and photos: tests/test_served.py compares the served answers
# with the in-process figure of the same run, and computing it again would take a minute of this machine.
_RATES: dict[tuple[int, tuple[str, ...]], tuple[object, tuple[float, list[str]]]] = {}


def right_rate(models, photos, facts) -> tuple[float, list[str]]:
    key = (id(models), tuple(str(held.path) for held in photos))
    if key not in _RATES:  # the models are kept with their figure: no other object takes their id meanwhile
        _RATES[key] = (models, _right_rate(models, photos, facts))
    return _RATES[key][1]


def _right_rate(models, photos, facts) -> tuple[float, list[str]]:
    torch.manual_seed(0)  # answers are sampled: the same seed, the same figure
    right, misses = 0, []
    for held, stored in zip(photos, facts):
        image = torch.as_tensor(stored.embedding)
        for question in EVALUATION_QUESTIONS:
            reply = answer_open(models, Conversation(stored), question, image, AnswerOptions(candidates=3))
            if judged_right(question, reply, held.scene):
                right += 1
            else:
                misses.append(f"{held.scene.caption} | {question} -> {reply.text}")
    return right / (len(photos) * len(EVALUATION_QUESTIONS)), misses


@pytest.fixture(scope="module")
def photos_and_facts(world_models, understood):
    photos = understood[::10]  # about 20 held-out photos, seen and unseen combinations: 60 questions a model
    return photos, world_models.describe([h.image for h in photos])


def test_the_chat_model_answers_open_questions_about_the_world_and_gpt2_does_not(
    world_models, world_dir, cache_dir, photos_and_facts, figure
) -> None:
    photos, facts = photos_and_facts
    assert world_models.answerer.get().chat  # the world's set names its chat model as the answer model
    chat_rate, misses = right_rate(world_models, photos, facts)
    gpt2 = load_models(
        world_models.model_set.with_overrides(answer_model=f"local-dir:{world_dir / 'gpt2'}"),
        device="cpu",
        cache_dir=cache_dir,
    )
    assert not gpt2.answerer.get().chat
    gpt2_rate, _ = right_rate(gpt2, photos, facts)
    figure(f"open questions answered right by the chat answer model ({len(photos)} held-out x 3)", chat_rate)
    figure(f"the same questions answered right by the world's GPT-2 ({len(photos)} held-out x 3)", gpt2_rate)
    assert chat_rate >= RIGHT_RATE, "\n".join(misses[:10])
    assert chat_rate > gpt2_rate


GLUED = re.compile(r"[a-z][A-Z]|[.!?]\w")  # "a crossIt is", "cross.It is": two sentences with no space between


def test_answers_later_in_a_conversation_are_sentences_not_two_glued_together(world_models, photos_and_facts) -> None:
    """The chat model answered "The shape is a crossIt is large." once the conversation held its earlier answers:
    the repetition ban counted the prompt, so the first word of any earlier answer and the end of any sentence
    said before were barred, and it ran past its sentence's end. Decoded by the world's own tokenizer."""
    model = world_models.answerer.get()
    markers = model.tokenizer.convert_tokens_to_ids(["<|system|>", "<|user|>", "<|assistant|>"])
    assert set(markers) <= set(model.stop_ids)  # a role marker begins another turn: decoding would drop it, gluing
    photos, facts = photos_and_facts
    torch.manual_seed(0)
    glued, answers = [], 0
    for held, stored in zip(photos, facts):
        scene = held.scene
        said = (f"The shape is a {scene.shape}.", f"It is {scene.size}.", f"The background is {scene.background}.")
        turns = tuple(turn for text in said for turn in (("user", "tell me"), ("assistant", text)))
        for question in ("what colour?", "tell me more about it"):
            prompt = build_prompt(model.tokenizer, Conversation(stored, turns), question, model.window - 16)
            for candidate in sample_answers(model, prompt, AnswerOptions(candidates=4), max_tokens=40):
                answers += 1
                if GLUED.search(candidate.text):
                    glued.append(f"{question} -> {candidate.text}")
    assert answers >= len(photos) * 2 * 3  # most candidates are answers, not dropped as empty or looping
    assert not glued, glued[:10]


def test_the_answer_model_is_loaded_on_the_first_open_question(world_dir, cache_dir, heldout) -> None:
    models = load_models(str(world_dir), device="cpu", cache_dir=cache_dir)
    stored = models.describe([heldout[0].image])[0]
    assert answer(models, Conversation(stored), "what colour is it?").route == "colour"
    assert not models.answerer.loaded  # photos and CLIP-answered questions never pay for its memory
    reply = answer(models, Conversation(stored), "is there anything else worth saying?")
    assert reply.route == "open" and models.answerer.loaded


def test_the_chat_prompt_carries_the_facts_the_turns_and_fits_the_models_window(world_models, heldout) -> None:
    model = world_models.answerer.get()
    assert model.window == model.lm.config.max_position_embeddings == 256  # from the config, not GPT-2's 1,024
    stored = world_models.describe([heldout[0].image])[0]
    turns = tuple((("user", "assistant")[i % 2], f"turn number {i} " + "blah " * 4) for i in range(30))
    prompt = build_prompt(model.tokenizer, Conversation(stored, turns), "and the background?", 200)
    assert len(model.tokenizer.encode(prompt, add_special_tokens=False)) <= 200
    assert prompt.startswith("<|system|>\n") and stored.caption in prompt.split("<|end|>")[0]
    assert all(label in prompt.split("<|end|>")[0] for label in stored.labels)
    assert "turn number 29" in prompt and "turn number 0 " not in prompt
    assert prompt.endswith("<|user|>\nand the background?<|end|>\n<|assistant|>\n")


def test_a_chat_answer_that_contradicts_the_photo_is_refused(world_models, understood) -> None:
    """The chat model repeats the facts it is given; when they are wrong, CLIP still stops the answer."""
    held = understood[0]
    stored = world_models.describe([held.image])[0]
    wrong = next(colour for colour in COLOURS if colour != held.scene.colour)
    tags = tuple(replace(tag, label=wrong) if tag.label == held.scene.colour else tag for tag in stored.tags)
    lied = PhotoFacts(stored.caption.replace(held.scene.colour, wrong), tags, stored.embedding, stored.model)
    torch.manual_seed(0)
    reply = answer_open(
        world_models,
        Conversation(lied),
        "which colour does it have?",
        torch.as_tensor(stored.embedding),
        AnswerOptions(candidates=4),
    )
    assert wrong not in reply.text.split("What I can see is:")[0]
    assert reply.details["refused"] and wrong in reply.details["refused"].values()


def test_any_causal_lm_loads_as_the_answer_model_with_its_own_window(world_dir) -> None:
    model = load_answer_model(Ref("local-dir", str(world_dir / "gpt2")), torch.device("cpu"), torch.float32)
    assert not model.chat and model.window == model.lm.config.n_positions == 64
    assert model.stop_ids  # ends at end-of-text or a new line


STRICT_TEMPLATE = (  # as Mistral's and Gemma's: no system role, and user/assistant strictly alternating
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ raise_exception('System role not "
    "supported') }}{% endif %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception("
    "'Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}<|{{ message['role'] }}|>\n"
    "{{ message['content'] }}<|end|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def test_a_strict_chat_template_gets_alternating_turns_and_the_facts_in_the_first_user_turn(
    world_models, heldout
) -> None:
    import copy

    tokenizer = copy.deepcopy(world_models.answerer.get().tokenizer)
    tokenizer.chat_template = STRICT_TEMPLATE
    stored = world_models.describe([heldout[0].image])[0]
    # As stored: an assistant greeting first, two user messages in a row, a question left unanswered.
    turns = (
        ("assistant", "Hi! Send me a photo."),
        ("user", "here it is"),
        ("user", "nice, right?"),
        ("assistant", "A lovely photo."),
        ("user", "and the colour?"),
    )
    prompt = build_prompt(tokenizer, Conversation(stored, turns), "and the background?", 250)
    assert prompt.startswith("<|user|>\n") and stored.caption in prompt.split("<|end|>")[0]
    assert "here it is nice, right?" in prompt and "Hi! Send me a photo." not in prompt
    assert prompt.endswith("<|user|>\nand the background?<|end|>\n<|assistant|>\n")


async def test_photos_are_served_while_the_answer_model_loads(world_dir, cache_dir, heldout) -> None:
    """The first question loads the answer model beside the model thread: a download or a load of several GB
    must not hold everyone's photos, nor stall the model thread long enough to fail the liveness check. The
    thread that loaded it ends: alive, it would keep its OpenMP team and slow every later photo."""
    import asyncio
    import threading

    from bot.engine import LocalModels, ModelFeatures
    from bot.engine.api import AnswerRequest, DescribeRequest
    from tests.bot_helpers import jpeg
    from vision.models.answer_model import LazyAnswerModel

    models = load_models(str(world_dir), device="cpu", cache_dir=cache_dir)
    real, loading, release = models.answerer, threading.Event(), threading.Event()
    loaders = []

    def slow_load():
        loaders.append(threading.current_thread())
        loading.set()
        release.wait(30)  # held until the photo below is answered
        return real.get()

    models.answerer = LazyAnswerModel(slow_load, "slow")
    local = LocalModels(ModelFeatures(models), timeout=60)
    try:
        stored = models.describe([heldout[0].image])[0]
        question = asyncio.create_task(local.answer(AnswerRequest(Conversation(stored), "anything else to say?")))
        assert await asyncio.to_thread(loading.wait, 10)
        facts = await asyncio.wait_for(local.describe(DescribeRequest(jpeg(heldout[1].image))), 10)
        assert facts.caption and not question.done() and local.stalled_for() == 0
        release.set()
        reply = await asyncio.wait_for(question, 30)
        assert reply.route == "open" and models.answerer.loaded
        loaders[0].join(10)
        assert not loaders[0].is_alive()
    finally:
        release.set()
        await local.close()


async def test_an_open_answer_streams_as_it_is_written_and_a_reader_may_leave_early(
    world_models, understood, monkeypatch
) -> None:
    """In process: the first sampled answer's text so far arrives as drafts from the model thread, then the checked
    answer; a question CLIP answers exactly has no drafts; a reader that stops at the first draft stops the
    sampling there, and the next question is answered long before that answer would have ended."""
    import asyncio
    import time

    from bot.engine import Draft, LocalModels, ModelFeatures
    from bot.engine.api import AnswerRequest

    stored = world_models.describe([understood[0].image])[0]
    local = LocalModels(ModelFeatures(world_models), timeout=30)
    try:
        events = [event async for event in local.answer_stream(AnswerRequest(Conversation(stored), "is it big?"))]
        *drafts, reply = events
        assert drafts and all(isinstance(draft, Draft) for draft in drafts) and reply.route == "open"
        assert all(len(later.text) > len(earlier.text) for earlier, later in itertools.pairwise(drafts))
        exact = [event async for event in local.answer_stream(AnswerRequest(Conversation(stored), "what colour?"))]
        assert [event.route for event in exact] == ["colour"]

        # a long answer: the end of turn suppressed for 38 tokens (generate's default, as a chatty model's)
        monkeypatch.setattr(world_models.answerer.get().lm.generation_config, "min_new_tokens", 38)
        asked = AnswerRequest(Conversation(stored), "tell me about the shape")
        started = time.perf_counter()
        [event async for event in local.answer_stream(asked)]
        whole = time.perf_counter() - started
        started = time.perf_counter()
        stream = local.answer_stream(asked)
        assert isinstance(await asyncio.wait_for(anext(stream), 30), Draft)
        await stream.aclose()
        nextone = await asyncio.wait_for(local.answer(AnswerRequest(Conversation(stored), "what colour?")), 30)
        assert nextone.route == "colour" and time.perf_counter() - started < whole / 2
    finally:
        await local.close()
