"""What the bot says about a photo posted behind a spoiler stays behind a spoiler, wherever it says it: its
reply to the photo, a group's auto-captions, a channel's alt text, answers to questions about the photo and
the commands that describe it. End to end against the fake Bot API server."""

from __future__ import annotations

from tests.bot_helpers import behind_spoilers, send_photo, send_text
from tests.fake_telegram import USERNAME, channel, group, private, user


def two_colours(understood):
    """A photo to post behind a spoiler and one to post in plain sight, of different colours."""
    hidden = understood[0]
    return hidden, next(h for h in understood if h.scene.colour != hidden.scene.colour)


async def test_the_reply_to_a_spoiler_photo_keeps_its_description_behind_a_spoiler(start_bot, telegram, understood):
    """The bot wrote a spoiler photo's description out in plain words, right under the photo."""
    await start_bot()
    chat, alice = private(1201), user(1201)
    hidden, shown = two_colours(understood)
    send_photo(telegram, chat, alice, hidden.image, spoiler=True)
    [described] = await telegram.wait_replies(chat["id"], 1)
    assert hidden.scene.caption.lower() in described.text.lower() and "Tags: #" in described.text
    assert behind_spoilers(described) == [described.text]  # every word of it, only tapped on
    assert "parse_mode" not in described.params

    asked = f"What colour is the {hidden.scene.shape}?"
    send_photo(telegram, chat, alice, hidden.image, caption=asked, spoiler=True)
    answered = (await telegram.wait_replies(chat["id"], 2))[-1]
    assert hidden.scene.colour in answered.text and behind_spoilers(answered) == [answered.text]

    send_photo(telegram, chat, alice, shown.image)
    plain = (await telegram.wait_replies(chat["id"], 3))[-1]
    assert shown.scene.caption.lower() in plain.text.lower() and not behind_spoilers(plain)


async def test_a_groups_auto_captions_keep_a_spoiler_photos_words_behind_a_spoiler(start_bot, telegram, understood):
    """A group's auto-caption (and an album's, line by line) described a spoiler photo in plain words."""
    await start_bot()
    room, admin, member = group(-101210), user(1211), user(1212)
    telegram.admins[room["id"]] = {admin["id"]}
    send_text(telegram, room, admin, "/settings autocaption on")
    await telegram.wait_replies(room["id"], 1)
    hidden, shown = two_colours(understood)
    send_photo(telegram, room, member, hidden.image, spoiler=True)  # nobody asked: the group's auto-caption
    captioned = (await telegram.wait_replies(room["id"], 2))[-1]
    assert hidden.scene.caption.lower() in captioned.text.lower()
    assert behind_spoilers(captioned) == [captioned.text]

    send_photo(telegram, room, member, hidden.image, media_group_id="mixed", spoiler=True)
    send_photo(telegram, room, member, shown.image, media_group_id="mixed")
    album = (await telegram.wait_replies(room["id"], 3))[-1]
    header, lines = album.text.split("\n", 1)
    first, second = lines.removeprefix("1. ").split("\n2. ")  # each photo's description and tags
    assert header == "2 photos:"
    assert hidden.scene.caption.lower() in first.lower() and shown.scene.caption.lower() in second.lower()
    # The spoiler photo's line is hidden; the plain photo's stays in plain sight, and so does the count.
    assert behind_spoilers(album) == [first]


async def test_a_channels_alt_text_for_a_spoiler_photo_is_behind_a_spoiler(start_bot, telegram, understood):
    """Alt text added to a spoiler photo's caption told every reader what the photo hid."""
    from bot.core.text import ALT_TEXT_HEADER

    await start_bot()
    posts = channel(-101220)
    send_text(telegram, posts, None, "/settings alttext on")
    await telegram.wait_replies(posts["id"], 1)
    hidden, shown = two_colours(understood)
    author = "Guess what 🎨 @clipchat_fans"
    post = send_photo(telegram, posts, None, hidden.image, caption=author, spoiler=True)
    [edit] = await telegram.wait_for(lambda: telegram.sent("editMessageCaption"), what="an alt text edit")
    assert int(edit.params["message_id"]) == post["message_id"]
    caption = edit.params["caption"]
    assert caption.startswith(author + "\n\n" + ALT_TEXT_HEADER)  # the author's words and the header: in sight
    [words] = behind_spoilers(edit, "caption")
    assert caption == author + "\n\n" + ALT_TEXT_HEADER + words and hidden.scene.caption.lower() in words.lower()
    assert post["caption_entities"][0] in edit.params["caption_entities"]  # the author's own entity is kept

    send_photo(telegram, posts, None, shown.image, caption="In plain sight")
    edits = await telegram.wait_for(
        lambda: len(telegram.sent("editMessageCaption")) == 2 and telegram.sent("editMessageCaption"),
        what="a second edit",
    )
    assert shown.scene.caption.lower() in edits[1].params["caption"].lower()
    assert not behind_spoilers(edits[1], "caption")


async def test_answers_about_a_spoiler_photo_stay_behind_a_spoiler(start_bot, telegram, understood):
    """A question in reply to a spoiler photo was answered in plain words: "it is red", for all to read."""
    await start_bot()
    room, alice = group(-101230), user(1231)
    hidden, shown = two_colours(understood)
    spoiler = send_photo(telegram, room, alice, hidden.image, caption=f"@{USERNAME} look", spoiler=True)
    await telegram.wait_replies(room["id"], 1)
    send_photo(telegram, room, alice, shown.image, caption=f"@{USERNAME} and this")
    await telegram.wait_replies(room["id"], 2)

    send_text(telegram, room, alice, f"@{USERNAME} what colour is it?", reply_to=spoiler)
    answer = (await telegram.wait_replies(room["id"], 3))[-1]
    assert hidden.scene.colour in answer.text and shown.scene.colour not in answer.text
    assert behind_spoilers(answer) == [answer.text]

    send_text(telegram, room, alice, f"@{USERNAME} what colour is it?")  # the latest photo: in plain sight
    plain = (await telegram.wait_replies(room["id"], 4))[-1]
    assert shown.scene.colour in plain.text and not behind_spoilers(plain)


async def test_tags_caption_and_mood_of_a_spoiler_photo_stay_behind_a_spoiler(start_bot, telegram, understood):
    """/tags (and /caption, /mood) about a spoiler photo said in plain words what it showed."""
    await start_bot()
    chat, bob = private(1241), user(1241)
    hidden, shown = two_colours(understood)
    spoiler = send_photo(telegram, chat, bob, hidden.image, spoiler=True)
    await telegram.wait_replies(chat["id"], 1)
    commands = ["/tags", f"/tags {hidden.scene.colour}, {shown.scene.colour}", "/caption", "/mood", "/tags nothing"]
    for command in commands:
        send_text(telegram, chat, bob, command, reply_to=spoiler)
    tags, weighed, caption, mood, refused = (await telegram.wait_replies(chat["id"], 1 + len(commands)))[1:]
    assert f"{hidden.scene.colour}: " in tags.text and behind_spoilers(tags) == [tags.text]
    assert weighed.text.startswith(f"{hidden.scene.colour}: ") and behind_spoilers(weighed) == [weighed.text]
    assert hidden.scene.caption.lower() in caption.text.lower() and behind_spoilers(caption) == [caption.text]
    assert mood.text.startswith("The photo feels") and behind_spoilers(mood) == [mood.text]
    assert "at least two labels" in refused.text and not behind_spoilers(refused)  # nothing about the photo

    send_photo(telegram, chat, bob, shown.image)
    await telegram.wait_replies(chat["id"], 2 + len(commands))
    send_text(telegram, chat, bob, "/tags")
    plain = (await telegram.wait_replies(chat["id"], 3 + len(commands)))[-1]
    assert f"{shown.scene.colour}: " in plain.text and not behind_spoilers(plain)
