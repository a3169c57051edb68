"""Questions about an album: asked across its photos and answered by position, or about one photo named by position.

The routing of album questions needs no world; the answers are measured on held-out world photos, and a user's album
and question go through the fake Bot API server in a private chat, a group and a forum topic.
"""

from __future__ import annotations

import random

import pytest

from clipchat.facts import PhotoFacts
from dialogue import Conversation, answer
from dialogue.album import Compare, HowMany, Picked, Which, asked, picked
from tests.bot_helpers import eventually, jpeg, send_photo, send_text
from tests.fake_telegram import USERNAME, forum, group, private, user
from tests.test_bot import stored
from tests.world.scenes import SHAPES

ORDINALS = ("first", "second", "third")


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Which one is red?", Which("red")),
        ("which of them are stars?", Which("stars")),
        ("Which photo has a circle?", Which("a circle")),
        ("which is the biggest?", Which("the biggest")),
        ("How many are stars?", HowMany("stars")),
        ("how many of them are red?", HowMany("red")),
        ("how many stars are there?", HowMany("stars")),
        ("How many photos are there?", HowMany("")),
        ("compare them", Compare()),
        ("What are the differences?", Compare()),
        ("what is this?", None),
        ("what colour is it?", None),
    ],
)
def test_album_questions_are_told_apart_from_questions_about_one_photo(question, expected) -> None:
    assert picked(question, 3) is None
    assert asked(question) == expected


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What is in the second one?", Picked(1, "what is in it")),
        ("what colour is the 3rd photo?", Picked(2, "what colour is it")),
        ("photo 3", Picked(2, "")),
        ("and the last one?", Picked(3, "")),
        ("Is the first one red?", Picked(0, "is it red")),
    ],
)
def test_a_photo_of_the_album_is_named_by_position(question, expected) -> None:
    assert picked(question, 4) == expected


def album_facts(world_models, photos) -> tuple[PhotoFacts, ...]:
    """What the bot keeps of an album's photos: the models' own captions and tags, of the JPEGs Telegram sends."""
    from vision import load_image

    return tuple(world_models.describe([load_image(jpeg(held.image)) for held in photos]))


def plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


def album_questions(rng: random.Random, photos) -> list[tuple[str, str, object]]:
    """(kind, question, what a right answer holds) for one album of held-out photos."""
    colour = rng.choice(photos).scene.colour
    shape = rng.choice(photos).scene.shape
    other = rng.choice(photos).scene.shape
    position = rng.randrange(len(photos))
    large = [p for p, held in enumerate(photos) if held.scene.size == "large"]
    return [
        ("which colour", f"Which one is {colour}?", [p for p, h in enumerate(photos) if h.scene.colour == colour]),
        ("how many", f"How many are {plural(shape)}?", [p for p, h in enumerate(photos) if h.scene.shape == shape]),
        ("which shape", f"which photo has a {other}?", [p for p, h in enumerate(photos) if h.scene.shape == other]),
        ("biggest", "Which is the biggest?", large),
        ("by position", f"What colour is the {ORDINALS[position]} one?", (position, photos[position].scene.colour)),
        ("what is in one", f"what is in the {ORDINALS[position]} one?", (position, photos[position].scene)),
        ("compare", "compare them", photos),
    ]


def right(kind: str, reply, truth) -> bool:
    if kind == "compare":
        return compared_right(reply.text, truth)
    if kind == "what is in one":
        position, scene = truth
        return reply.details.get("photo") == position and scene.shape in reply.text and scene.colour in reply.text
    if kind == "by position":
        position, colour = truth
        return reply.details.get("photo") == position and reply.details.get("colour") == colour and colour in reply.text
    found = sorted(reply.details.get("photos", []))
    if kind == "biggest" and not truth:  # all small: any one of them is the biggest
        return len(found) == 1
    named = [ORDINALS[p] for p in truth] if 0 < len(truth) < 3 else []
    return reply.route == "album" and found == truth and all(name in reply.text for name in named)


def compared_right(text: str, photos) -> bool:
    """A line per photo, in order; then each attribute all of them share named, and each they differ in."""
    lines = text.split("\n")
    shared: set[str] = set()
    differ: set[str] = set()
    for line in lines[len(photos) :]:
        if line.startswith("All of them: "):
            shared = set(line.removeprefix("All of them: ").rstrip(".").split(", "))
        if line.startswith("They differ in "):
            differ = set(line.removeprefix("They differ in ").rstrip(".").split(", "))
    for name in ("size", "colour", "shape", "background"):
        values = {getattr(held.scene, name) for held in photos}
        value = values.pop()
        if not (name in differ if values else value in shared or f"{value} background" in shared):
            return False
    return all(line.startswith(f"The {ORDINALS[p]} photo: ") for p, line in enumerate(lines[: len(photos)]))


def test_album_questions_are_answered_across_the_albums_photos(world_models, heldout, figure) -> None:
    """After an album, "which one is red?" had no answer path: it was answered about the album's last photo."""
    rng = random.Random(0)
    scores: dict[str, list[bool]] = {}
    wrong = []
    for split, pool in (("seen", [h for h in heldout if h.seen]), ("unseen", [h for h in heldout if not h.seen])):
        for _ in range(30):
            photos = rng.sample(pool, 3)
            album = album_facts(world_models, photos)
            conversation = Conversation(album[-1], album=album, position=2)
            for kind, question, truth in album_questions(rng, photos):
                reply = answer(world_models, conversation, question)
                ok = right(kind, reply, truth)
                scores.setdefault(split, []).append(ok)
                scores.setdefault(kind, []).append(ok)
                if not ok:
                    wrong.append((question, reply.text, [h.scene.caption for h in photos]))
    for name, got in scores.items():
        figure(f"album questions right, {name} (albums of 3 held-out photos)", sum(got) / len(got))
    for split in ("seen", "unseen"):
        assert sum(scores[split]) / len(scores[split]) >= 0.9, (split, wrong[:5])


def test_a_photo_named_by_position_stays_under_discussion(world_models, heldout) -> None:
    photos = [next(h for h in heldout if h.scene.shape == shape) for shape in SHAPES[:3]]
    album = album_facts(world_models, photos)
    reply = answer(world_models, Conversation(album[-1], album=album, position=2), "what is in the second one?")
    assert reply.route == "describe" and reply.details["photo"] == 1
    assert reply.text.startswith("The second photo:") and album[1].caption.rstrip(".").lower() in reply.text.lower()
    reply = answer(world_models, Conversation(album[1], album=album, position=1), "and the fifth?")
    assert reply.route == "album" and "only 3 photos" in reply.text


@pytest.mark.parametrize("where", ["private", "group", "forum topic"])
async def test_which_one_is_red_after_an_album_names_the_photo(start_bot, telegram, world_models, understood, where):
    """The same person sends an album and asks which photo has a colour: the answer names its position, and
    "what shape is it?" is then about that photo."""
    from tests.test_bot import distinct

    app = await start_bot()
    alice = user(41)
    chat, topic = {"private": (private(41), None), "group": (group(-100410), None), "forum topic": (forum(-100420), 7)}[
        where
    ]
    fields = {"topic": topic} if topic else {}
    mention = f"@{USERNAME} " if chat["type"] != "private" else ""
    photos = distinct([h for h in understood if h.scene.shape != "cross"], 3)
    for number, held in enumerate(photos):
        caption = mention.strip() if number == 0 and mention else None
        send_photo(telegram, chat, alice, held.image, caption=caption, media_group_id="trip", **fields)
    [described] = await telegram.wait_replies(chat["id"], 1)
    assert described.text.startswith("3 photos:")
    await eventually(lambda: stored(app, stored_turns(chat), 2), what="the album's turns stored")
    wanted = photos[1]
    send_text(telegram, chat, alice, f"{mention}which one is {wanted.scene.colour}?", **fields)
    reply = (await telegram.wait_replies(chat["id"], 2))[-1]
    assert "second" in reply.text and "first" not in reply.text and "third" not in reply.text, reply.text
    assert reply.topic == topic
    send_text(telegram, chat, alice, f"{mention}what shape is it?", **fields)
    shape = (await telegram.wait_replies(chat["id"], 3))[-1]
    assert shape.text.startswith("The second photo:") and wanted.scene.shape in shape.text, shape.text
    assert all(held.scene.shape not in shape.text for held in photos if held.scene.shape != wanted.scene.shape)


def stored_turns(chat: dict):
    from storage import Turn

    return Turn.chat_id == chat["id"]


async def test_a_question_in_an_albums_caption_is_answered_across_its_photos(start_bot, telegram, understood):
    """An album captioned "which one is red?" got its photos described and the question ignored."""
    from tests.test_bot import distinct

    app = await start_bot()
    chat, alice = private(43), user(43)
    photos = distinct(understood, 3)
    wanted = photos[1]
    for number, held in enumerate(photos):
        caption = f"Which one is {wanted.scene.colour}?" if number == 0 else None
        send_photo(telegram, chat, alice, held.image, caption=caption, media_group_id="asked")
    [reply] = await telegram.wait_replies(chat["id"], 1)
    answer, lines = reply.text.split("\n\n", 1)
    assert "second" in answer and "first" not in answer and "third" not in answer, reply.text
    assert lines.startswith("3 photos:"), reply.text
    await eventually(lambda: stored(app, stored_turns(chat), 2), what="the album's turns stored")
    send_text(telegram, chat, alice, "what colour is it?")
    colour = (await telegram.wait_replies(chat["id"], 2))[-1]
    assert colour.text.startswith("The second photo:") and wanted.scene.colour in colour.text, colour.text
