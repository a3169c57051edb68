"""A model server that sees images gets the photo under discussion with each question, downloaded again from
(fake) Telegram by its stored file id: `transformers serve` on loopback, through the proxy that records what it
was sent. The world's chat model is text-only; transformers serve reads the words of a message that carries an
image too, so every answer here is still written by it.
"""

from __future__ import annotations

import base64
import io
import logging

from PIL import Image

from tests.bot_helpers import jpeg, send_photo, send_text
from tests.fake_telegram import private, user
from tests.test_served import OPEN, started_with_server, told


def sent_photo(asked) -> Image.Image | None:
    """The photo a question to the server carried, or None when only words went."""
    content = asked.body["messages"][-1]["content"]
    if isinstance(content, str):
        return None
    [words] = [part for part in content if part["type"] == "text"]
    [image] = [part for part in content if part["type"] == "image_url"]
    assert words["text"] == OPEN
    url = image["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def downloads(telegram) -> int:
    return len(telegram.sent("getFile", refused=True))


async def ask(telegram, chat: dict, person: dict, replies: int) -> str:
    send_text(telegram, chat, person, OPEN)
    return (await telegram.wait_replies(chat["id"], replies, timeout=60))[-1].text


async def test_follow_ups_carry_the_photo_to_a_model_that_sees_images_and_forget_lets_it_go(
    start_bot, telegram, bot_settings, world_dir, proxy, understood
):
    chat, alice = private(8700), user(8700)
    blind = await started_with_server(start_bot, bot_settings, world_dir, proxy.url)
    mine = send_photo(telegram, chat, alice, jpeg(understood[0].image.resize((1600, 1200))))
    await telegram.wait_replies(8700, 1, timeout=60)
    assert not told(await ask(telegram, chat, alice, 2))
    assert sent_photo(proxy.questions[-1]) is None and downloads(telegram) == 1  # words only, nothing fetched
    await start_bot.stop(blind)

    # The same conversation, now with a model that sees images: follow-ups about the photo sent before
    app = await started_with_server(start_bot, bot_settings, world_dir, proxy.url, answer_sees_images=True)
    services = app.bot_data.services
    for replies in (3, 4):
        assert not told(await ask(telegram, chat, alice, replies))
        photo = sent_photo(proxy.questions[-1])
        assert photo is not None and photo.format == "JPEG" and photo.size == (512, 384)  # 1600x1200, downscaled
    assert downloads(telegram) == 2  # downloaded again once: the second follow-up's came from memory
    assert len(services.pixels) == 1 and 0 < services.pixels.used < 100_000

    # A question in a photo's caption sees it too, and its follow-ups need no download of their own
    bob_chat, bob = private(8701), user(8701)
    send_photo(telegram, bob_chat, bob, understood[1].image, caption=OPEN)
    assert not told((await telegram.wait_replies(8701, 1, timeout=60))[-1].text)
    assert sent_photo(proxy.questions[-1]) is not None
    assert not told(await ask(telegram, bob_chat, bob, 2)) and sent_photo(proxy.questions[-1]) is not None
    assert downloads(telegram) == 3 and len(services.pixels) == 2  # Bob's photo, downloaded once

    send_text(telegram, chat, alice, "/forget this", reply_to=mine)
    await telegram.wait_replies(8700, 5, timeout=30)
    assert len(services.pixels) == 1  # Alice's photo went; Bob's stays
    send_text(telegram, bob_chat, bob, "/forget")
    [question] = await telegram.wait_for(
        lambda: [c for c in telegram.replies(8701) if "reply_markup" in c.params], what="the /forget question"
    )
    callback = {"id": "cb8701", "from": bob, "chat_instance": "ci", "data": "forget:yes:8701"}
    telegram.push({"callback_query": callback | {"message": telegram.bot_message(question)}})
    await telegram.wait_for(lambda: telegram.sent("editMessageText", 8701), what="the confirmation")
    assert len(services.pixels) == 0


async def test_a_photo_telegram_no_longer_serves_or_serves_slowly_costs_no_answer(
    start_bot, telegram, bot_settings, world_dir, proxy, understood, caplog
):
    settings = {"answer_sees_images": True, "answer_photo_wait_s": 1, "answer_photo_cache_mb": 0}  # none kept
    await started_with_server(start_bot, bot_settings, world_dir, proxy.url, **settings)
    gone, slow = (private(8710), user(8710)), (private(8711), user(8711))
    posted = []
    for (chat, person), held in zip((gone, slow), understood, strict=False):
        posted.append(send_photo(telegram, chat, person, held.image)["photo"][-1]["file_id"])
        await telegram.wait_replies(chat["id"], 1, timeout=60)
    del telegram.files[posted[0]]  # getFile: 400, invalid file_id
    telegram.download_status[posted[1]] = "hang"  # getFile answers, the file server never does
    with caplog.at_level(logging.INFO, logger="bot.core.pixels"):
        for chat, person in (gone, slow):
            answer = await ask(telegram, chat, person, 2)
            assert not told(answer) and answer.strip()  # answered, by the server, from the words
            assert sent_photo(proxy.questions[-1]) is None
    assert len(telegram.sent("getFile", refused=True)) - len(telegram.sent("getFile")) >= 1  # gone: refused
    lines = [record.getMessage() for record in caplog.records if record.name == "bot.core.pixels"]
    assert len(lines) == 2 and "could not be had" in lines[0] and "took over 1 s" in lines[1], lines


def test_kept_photos_stay_within_their_bytes_and_a_forget_outruns_a_download() -> None:
    from bot.core.pixels import Pixels, _Entry
    from storage import ImageRecord

    kept = Pixels(total=250)
    records = [ImageRecord(id=n, file_unique_id=f"u{n}", chat_id=1, sender_id=n) for n in range(3)]
    for record in records:
        kept.put(record.id, _Entry(record.file_unique_id, 1, record.sender_id, bytes(100)), kept.epoch)
        kept.get(records[0])  # the first is asked about again and again: the second goes first
    assert [kept.get(record) is not None for record in records] == [True, False, True] and kept.used == 200
    assert kept.get(ImageRecord(id=2, file_unique_id="another")) is None  # an id handed out again
    begun = kept.epoch  # a download begins; /forget lands before it ends
    kept.drop_person(0)
    kept.put(1, _Entry("u1", 1, 1, bytes(100)), begun)
    assert len(kept) == 1 and kept.get(records[1]) is None and kept.used == 100
    kept.settle(3)
    kept.settle(4)  # someone was forgotten in another process
    assert len(kept) == 0 and kept.used == 0
