"""An in-process answer model that sees images, end to end through the fake Bot API: the bot runs the world's set
with a tiny SmolVLM-architecture model as its answer model, trained here to answer one wrong colour to anything.
A follow-up question brings the photo's pixels to it (downloaded again by file id, or kept downscaled in memory),
the private chat's drafts show what it wrote, and CLIP, which knows the photo's colour, refuses it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dialogue.generation import contradiction
from tests.bot_helpers import jpeg, send_photo, send_text
from tests.fake_telegram import private, user
from tests.test_vlm import Forwards
from tests.tiny_vlms import tiny_smolvlm, train_to_say
from vision import load_image, load_model_set, load_models

OPEN = "what is the background like?"  # routed to the answer model, not to CLIP
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "white", "black")


@pytest.fixture(scope="module")
def vlm_folder(tmp_path_factory) -> Path:
    return tiny_smolvlm(tmp_path_factory.mktemp("vlm") / "smolvlm")


@pytest.fixture(scope="module")
def world_models(world_dir, cache_dir, vlm_folder):
    """The world's set with the VLM as its answer model: what `start_bot` runs in this module. The VLM's weights
    load on the first open question, so `vlm_case` trains them first."""
    model_set = load_model_set(str(world_dir)).with_overrides(answer_model=f"local-dir:{vlm_folder}")
    return load_models(model_set, device="cpu", cache_dir=cache_dir)


@pytest.fixture(scope="module")
def vlm_case(world_models, vlm_folder, heldout):
    """(photo, the colour the VLM was trained to say: one CLIP is confident the photo is not)."""
    assert not world_models.answerer.loaded
    held = heldout[0]
    facts = world_models.describe([load_image(jpeg(held.image))])[0]
    vector = torch.as_tensor(facts.embedding)
    wrong = next(
        c for c in COLOURS if c != held.scene.colour and contradiction(world_models, vector, f"It is {c}.") == c
    )
    train_to_say(vlm_folder, f"It is {wrong}.", held.image, facts)
    return held, wrong


async def test_an_open_question_brings_the_photo_to_the_vlm_and_clip_refuses_its_wrong_colour(
    start_bot, telegram, bot_settings, world_models, vlm_case
):
    held, wrong = vlm_case
    app = await start_bot(bot_settings.model_copy(update={"draft_every_ms": 0}))  # every word shown
    services = app.bot_data.services
    assert services.models.sees_images  # decided from the answer model's config at start-up
    model = world_models.answerer.get()
    looks = Forwards(model.lm)
    chat, dora = private(8800), user(8800)
    sent = jpeg(held.image.resize((1600, 1200)))
    send_photo(telegram, chat, dora, sent)
    await telegram.wait_replies(8800, 1, timeout=60)

    send_text(telegram, chat, dora, OPEN)
    answer = (await telegram.wait_replies(8800, 2, timeout=60))[-1]
    drafted = [draft.text for draft in telegram.drafts(8800)]
    assert any(wrong in text for text in drafted), drafted  # the VLM wrote its colour, shown as a draft
    assert wrong not in answer.text.split("What I can see is:")[0], (drafted, answer.text)  # CLIP refused it
    # kept downscaled in memory as it was described: the follow-up needed no second download
    assert len(services.pixels) == 1 and len(telegram.sent("getFile", refused=True)) == 1

    # What its vision tower saw is the photo, as the bot downscaled it (512 px), through the model's processor
    from bot.engine.served import downscaled
    from vision.models.vlm import photo_inputs

    [pixels] = looks.pixels
    expected = photo_inputs(model, "<image>", load_image(downscaled(sent, services.models.limits)))["pixel_values"]
    assert torch.allclose(pixels.reshape(-1), expected.reshape(-1), atol=1e-4)

    send_text(telegram, chat, dora, "/forget")  # what /forget deletes, the kept photo included
    await telegram.wait_for(
        lambda: [c for c in telegram.replies(8800) if "reply_markup" in c.params], what="the /forget question"
    )
    [question] = [c for c in telegram.replies(8800) if "reply_markup" in c.params]
    callback = {"id": "cb8800", "from": dora, "chat_instance": "ci", "data": "forget:yes:8800"}
    telegram.push({"callback_query": callback | {"message": telegram.bot_message(question)}})
    await telegram.wait_for(lambda: telegram.sent("editMessageText", 8800), what="the confirmation")
    assert len(services.pixels) == 0
