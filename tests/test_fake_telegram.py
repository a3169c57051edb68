"""The fake Bot API server itself: it must read every body encoding real clients send."""

from __future__ import annotations

import aiohttp

from tests.conftest import BOT_TOKEN
from tests.fake_telegram import forum, group, private, user


async def test_json_form_and_multipart_bodies_are_all_understood(telegram) -> None:
    telegram.message(private(5), None, text="hello")  # the fake learns chat 5 is private
    url = f"{telegram.base_url}{BOT_TOKEN}/sendMessage"
    markup = '{"inline_keyboard": [[{"text": "ok", "callback_data": "x"}]]}'
    form = aiohttp.FormData({"chat_id": "5", "text": "multipart", "reply_markup": markup})
    form._is_multipart = True
    async with aiohttp.ClientSession() as http:
        for body in (
            {"json": {"chat_id": 5, "text": "json"}},
            {"data": {"chat_id": "5", "text": "form", "reply_markup": markup}},
            {"data": form},
        ):
            async with http.post(url, **body) as response:
                assert (await response.json())["ok"] is True
        async with http.post(f"{telegram.base_url}wrong:token/getMe") as response:
            assert response.status == 401
    calls = telegram.sent("sendMessage", 5)
    assert [c.text for c in calls] == ["json", "form", "multipart"]
    assert calls[1].params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "x"
    assert calls[2].params["reply_markup"] == calls[1].params["reply_markup"]


async def test_what_telegram_refuses_is_refused(telegram) -> None:
    """4,096 UTF-16 units of text, 1,024 of caption (as shown, after Markdown), and legacy Markdown that parses."""
    telegram.message(private(6), None, text="hello")
    url = f"{telegram.base_url}{BOT_TOKEN}"
    cases = [
        ("sendMessage", {"text": "🎨" * 2048}, True),
        ("sendMessage", {"text": "🎨" * 2049}, False),
        ("sendMessage", {"text": "   "}, False),
        ("sendPhoto", {"photo": "f", "caption": "🎨" * 512}, True),
        ("sendPhoto", {"photo": "f", "caption": "🎨" * 513}, False),
        ("sendMessage", {"text": "*bold* _it_ `code` [a](http://x) snake\\_case", "parse_mode": "Markdown"}, True),
        ("sendMessage", {"text": "I'm *clipchat", "parse_mode": "Markdown"}, False),
        ("sendMessage", {"text": "[a] *b* [c](http://x", "parse_mode": "Markdown"}, True),
        ("sendMessage", {"text": "*" + "🎨" * 2048 + "*", "parse_mode": "Markdown"}, True),
        ("sendMessage", {"text": "I'm *clipchat"}, True),
    ]  # plain text may hold any star
    async with aiohttp.ClientSession() as http:
        for method, params, accepted in cases:
            async with http.post(f"{url}/{method}", json={"chat_id": 6, **params}) as response:
                assert (await response.json())["ok"] is accepted, (method, params)
    assert [call.refused for call in telegram.calls] == [not accepted for _, _, accepted in cases]


async def test_drafts_go_to_private_chats_only_with_a_draft_id_and_4096_characters_at_most(telegram) -> None:
    """Bot API 10.0's sendMessageDraft: an empty text is Telegram's "Thinking…" placeholder, not a refusal."""
    telegram.message(private(7), None, text="hello")
    telegram.message(group(-1007), None, text="hello")
    cases = [
        ({"chat_id": 7, "draft_id": 3, "text": "A small"}, True),
        ({"chat_id": 7, "draft_id": 3, "text": ""}, True),
        ({"chat_id": 7, "draft_id": 3, "text": "🎨" * 2048}, True),
        ({"chat_id": 7, "draft_id": 3, "text": "🎨" * 2049}, False),
        ({"chat_id": 7, "draft_id": 0, "text": "A small"}, False),
        ({"chat_id": -1007, "draft_id": 3, "text": "A small"}, False),
    ]
    async with aiohttp.ClientSession() as http:
        for params, accepted in cases:
            async with http.post(f"{telegram.base_url}{BOT_TOKEN}/sendMessageDraft", json=params) as response:
                assert (await response.json())["ok"] is accepted, params
    assert [call.text for call in telegram.drafts(7)] == ["A small", "", "🎨" * 2048]
    assert telegram.drafts(-1007) == [] and len(telegram.sent("sendMessageDraft", refused=True)) == len(cases)
    assert [call.draft_id for call in telegram.drafts()] == [3, 3, 3]
    assert all(earlier.at <= later.at for earlier, later in zip(telegram.calls, telegram.calls[1:]))


async def test_topics_are_kept_as_telegram_keeps_them(telegram) -> None:
    """A reply lands in the topic of the message it quotes, a topic named lands there, General is no topic, and a
    topic named in a chat without topics is refused."""
    room, plain = forum(-100301), group(-100302)
    asked = telegram.message(room, user(7), text="hi", topic=11)
    assert asked["is_topic_message"] and asked["reply_to_message"]["forum_topic_created"]
    telegram.message(plain, user(7), text="hi")
    url = f"{telegram.base_url}{BOT_TOKEN}"
    cases = [
        ("sendMessage", {"chat_id": room["id"], "text": "a", "reply_parameters": {"message_id": asked["message_id"]}}),
        ("sendMessage", {"chat_id": room["id"], "text": "b", "message_thread_id": 12}),
        ("sendMessage", {"chat_id": room["id"], "text": "c"}),
        ("sendChatAction", {"chat_id": room["id"], "action": "typing", "message_thread_id": 11}),
        ("sendMessage", {"chat_id": plain["id"], "text": "d", "message_thread_id": 11}),
        ("sendChatAction", {"chat_id": plain["id"], "action": "typing", "message_thread_id": 11}),
    ]
    async with aiohttp.ClientSession() as http:
        for method, params in cases:
            async with http.post(f"{url}/{method}", json=params) as response:
                assert response.status == (400 if params["chat_id"] == plain["id"] else 200), params
    assert [(call.topic, call.refused) for call in telegram.calls] == [
        (11, False),
        (12, False),
        (None, False),
        (11, False),
        (11, True),
        (11, True),
    ]
