"""Reading the text in a photo, end to end through the fake Bot API: `/read` and "what does it say?" reach the
answer model that sees the photo, with the photo. A tiny SmolVLM of the real architecture is asked to transcribe
(a fixed instruction, not the user's words, and no CLIP check), Florence-2 runs its OCR task, and a set whose
answer model reads only words says which sets can read. At random weights the transcription is random text, so
the tests assert the path: the photo reached the model's vision tower, and a reply came saying what it read.
"""

from __future__ import annotations

import pytest

import dialogue.seeing as seeing
from clipchat.i18n import translator
from tests.bot_helpers import send_photo, send_text
from tests.fake_telegram import USERNAME, forum, group, private, user
from tests.test_vlm import Forwards
from tests.tiny_vlms import tiny_florence2, tiny_smolvlm
from vision import load_model_set, load_models

READ_PREFIX = seeing.READS_AS.split("{")[0]


@pytest.fixture(scope="module", params=["smolvlm", "florence-2", "words"])
def reader(request) -> str:
    """The answer model: a tiny chat VLM, a tiny Florence-2, or the world's chat model, which reads words only."""
    return request.param


@pytest.fixture(scope="module")
def world_models(reader, world_dir, cache_dir, tmp_path_factory):
    """What `start_bot` runs in this module: the world's set with `reader` as its answer model."""
    model_set = load_model_set(str(world_dir))
    if reader != "words":
        make = tiny_smolvlm if reader == "smolvlm" else tiny_florence2
        folder = make(tmp_path_factory.mktemp("reader") / reader)
        model_set = model_set.with_overrides(answer_model=f"local-dir:{folder}")
    return load_models(model_set, device="cpu", cache_dir=cache_dir)


@pytest.fixture
def spied(monkeypatch):
    """What the dialogue asked the answer model: the chat VLM's instruction, Florence-2's task, CLIP's checks."""
    seen: dict[str, list] = {"asked": [], "tasks": [], "judged": []}

    def inputs(model, conversation, question, picture, budget, instruction=seeing.SEEING_INSTRUCTION):
        seen["asked"].append((question, instruction, picture is not None, len(conversation.turns)))
        return original_inputs(model, conversation, question, picture, budget, instruction)

    def task(model, picture, name, max_tokens):
        seen["tasks"].append(name)
        return original_task(model, picture, name, max_tokens)

    def judged(*args, **kwargs):
        seen["judged"].append(args)
        return original_judged(*args, **kwargs)

    original_inputs, original_task, original_judged = seeing.seen_inputs, seeing.run_task, seeing.judged
    monkeypatch.setattr(seeing, "seen_inputs", inputs)
    monkeypatch.setattr(seeing, "run_task", task)
    monkeypatch.setattr(seeing, "judged", judged)
    return seen


def _read_reply(text: str) -> bool:
    return text.startswith(READ_PREFIX) or text == seeing.NO_TEXT


async def test_read_transcribes_the_photo_with_the_answer_model_that_sees_it(
    start_bot, telegram, reader, world_models, heldout, spied
):
    app = await start_bot()
    held = heldout[0]
    chat, dora = private(8900), user(8900)
    send_photo(telegram, chat, dora, held.image)
    await telegram.wait_replies(8900, 1, timeout=60)
    if reader == "words":
        assert not app.bot_data.services.models.sees_images
        send_text(telegram, chat, dora, "/read")
        said = (await telegram.wait_replies(8900, 2, timeout=60))[-1].text
        assert "needs an answer model that sees the photo" in said, said
        assert all(name in said for name in seeing.READING_SETS), said
        assert not world_models.answerer.loaded or not spied["asked"]  # nothing was asked to make text up
        return

    looks = Forwards(world_models.answerer.get().lm)
    send_text(telegram, chat, dora, "what's the shape like?")  # an earlier turn the transcription leaves out
    await telegram.wait_replies(8900, 2, timeout=60)
    looks.clear()
    spied["asked"].clear()
    spied["judged"].clear()
    send_text(telegram, chat, dora, "/read")
    read = (await telegram.wait_replies(8900, 3, timeout=60))[-1].text
    assert _read_reply(read), read
    assert looks.pixels and looks.pixels[0] is not None and looks.pixels[0].numel() > 0  # it saw the photo
    if reader == "florence-2":
        assert spied["tasks"][-1] == "<OCR>"  # its OCR task, not a conversation
    else:
        [(question, instruction, with_photo, turns)] = spied["asked"]
        assert question == instruction == seeing.TRANSCRIBE and with_photo and turns == 0
        assert not spied["judged"]  # CLIP cannot check letters: a transcription is not judged

    send_text(telegram, chat, dora, "What does it say?")  # the words ask the same
    again = (await telegram.wait_replies(8900, 4, timeout=60))[-1].text
    assert _read_reply(again), again
    assert len(looks.pixels) == 2


async def test_read_in_a_group_reply_and_a_forum_topic(start_bot, telegram, reader, world_models, heldout):
    """As a reply to a photo in a group, and about a topic's photo in a forum: each read is of that photo."""
    if reader == "words":
        pytest.skip("the words-only set's line is the same in every chat")
    await start_bot()
    room, alice = group(-100890), user(891)
    photo = send_photo(telegram, room, alice, heldout[1].image, caption=f"@{USERNAME}")
    await telegram.wait_replies(room["id"], 1, timeout=60)
    looks = Forwards(world_models.answerer.get().lm)
    send_text(telegram, room, alice, "/read", reply_to=photo)
    read = (await telegram.wait_replies(room["id"], 2, timeout=60))[-1]
    assert _read_reply(read.text) and looks.pixels, read.text

    topics = forum(-100892)
    send_photo(telegram, topics, alice, heldout[2].image, caption=f"@{USERNAME}", topic=11)
    await telegram.wait_replies(topics["id"], 1, timeout=60)
    send_text(telegram, topics, alice, "/read", topic=11)
    there = (await telegram.wait_replies(topics["id"], 2, timeout=60))[-1]
    assert there.topic == 11 and _read_reply(there.text), there.text
    assert len(looks.pixels) == 2


async def test_read_says_which_sets_can_read_in_the_reader_s_language(start_bot, telegram, reader, heldout):
    if reader != "words":
        pytest.skip("only an answer model that reads words refuses")
    await start_bot()
    chat, olga = private(8910), user(8910, "ru")
    send_photo(telegram, chat, olga, heldout[0].image)
    await telegram.wait_replies(8910, 1, timeout=60)
    send_text(telegram, chat, olga, "/read")
    said = (await telegram.wait_replies(8910, 2, timeout=60))[-1].text
    expected = translator("ru")(seeing.NO_READING, sets=", ".join(seeing.READING_SETS))
    assert said == expected and "smolvlm-256m" in said, said
