"""A small fake Bot API server on 127.0.0.1, for driving the real python-telegram-bot stack in tests.

It queues updates for getUpdates (or posts them to a webhook), serves files for
getFile and the download, answers the send/edit methods the bot uses (and the
drafts of replies being written, sendMessageDraft) while recording every call, and
can be told to fail a method (a 429 with retry_after). Bodies may be JSON,
form-encoded or multipart, as real clients send them.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from http import HTTPStatus

from aiohttp import web

USERNAME = "clipchat_test_bot"
BOT_ID = 4242


@dataclass
class Call:
    method: str
    params: dict
    at: float = field(default_factory=time.monotonic)
    refused: bool = False  # answered with an injected error

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return int(value) if value is not None else None

    @property
    def reply_to(self) -> int | None:
        parameters = self.params.get("reply_parameters") or {}
        value = parameters.get("message_id", self.params.get("reply_to_message_id"))
        return int(value) if value is not None else None

    @property
    def text(self) -> str:
        return self.params.get("text") or self.params.get("caption") or ""

    @property
    def draft_id(self) -> int | None:
        value = self.params.get("draft_id")
        return int(value) if value is not None else None

    @property
    def topic(self) -> int | None:
        """The forum topic Telegram shows what this call made in (a message, a chat action); None: a chat
        without topics, or a forum's General."""
        result = self.params.get("_result")
        if isinstance(result, dict):
            return result.get("message_thread_id") if result.get("is_topic_message") else None
        value = self.params.get("message_thread_id")
        return int(value) if value is not None else None


class FakeTelegram:
    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.webhook: dict | None = None
        self.files: dict[str, bytes] = {}
        self.download_status: dict[str, int | str] = {}  # a status code, or "hang" or "truncate"
        self.latency: dict[str, float] = {}  # seconds a method takes to answer (a slow or distant server)
        self.held: dict[str, asyncio.Event] = {}  # a method answers once its event is set (a request in flight)
        self.admins: dict[int, set[int]] = {}
        self._updates: list[dict] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(100)
        self._failures: dict[str, list[dict]] = {}
        self._chats: dict[int, dict] = {}
        self._topics: dict[tuple[int, int], int] = {}  # (chat id, message id): the forum topic it is in
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()  # a download told to hang waits for this
        self.port = 0

    # --- server -------------------------------------------------------------------------------------------------

    async def start(self) -> FakeTelegram:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.*}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # --- what tests do ------------------------------------------------------------------------------------------

    def push(self, update: dict) -> int:
        update = {"update_id": next(self._update_ids), **update}
        self._updates.append(update)
        asyncio.get_running_loop().create_task(self._notify())
        return update["update_id"]

    def add_file(
        self, data: bytes, declared_size: int | None = None, download_status: int | str | None = None
    ) -> tuple[str, str, int]:
        """A file getFile knows; `download_status` makes the file server answer that instead (404: expired),
        never answer ("hang"), or cut the body short ("truncate")."""
        unique = hashlib.sha1(data).hexdigest()[:16] + f"-{len(self.files)}"
        file_id = f"file-{unique}"
        self.files[file_id] = data
        if download_status is not None:
            self.download_status[file_id] = download_status
        return file_id, unique, declared_size if declared_size is not None else len(data)

    def fail(
        self, method: str, times: int = 1, code: int = 429, retry_after: int = 1, description: str | None = None
    ) -> None:
        """The next `times` calls of `method` get this error instead of an answer."""
        body = {
            "ok": False,
            "error_code": code,
            "description": description
            or (f"Too Many Requests: retry after {retry_after}" if code == 429 else "Bad Request"),
        }
        if code == 429:
            body["parameters"] = {"retry_after": retry_after}
        self._failures.setdefault(method, []).extend([body] * times)

    def sent(self, method: str | None = None, chat_id: int | None = None, refused: bool = False) -> list[Call]:
        """Calls the bot made (answered ones; with `refused`, also those that got an injected error)."""
        return [
            call
            for call in self.calls
            if (method is None or call.method == method)
            and (chat_id is None or call.chat_id == chat_id)
            and (refused or not call.refused)
        ]

    def replies(self, chat_id: int | None = None) -> list[Call]:
        return [
            call
            for call in self.calls
            if call.method in ("sendMessage", "sendPhoto", "sendDocument")
            and (chat_id is None or call.chat_id == chat_id)
            and not call.refused
        ]

    def drafts(self, chat_id: int | None = None) -> list[Call]:
        """The drafts Telegram showed (sendMessageDraft calls it accepted), oldest first; each call's `at` is when
        it arrived (time.monotonic()), its `draft_id` which reply it was a draft of."""
        return self.sent("sendMessageDraft", chat_id)

    async def wait_for(self, check, timeout: float = 30.0, what: str = "the bot"):
        """Wait until `check()` is truthy (re-checked after every call the bot makes); return its value."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while not (result := check()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out waiting for {what}; calls so far: "
                        f"{[(c.method, c.params.get('chat_id'), c.text[:60]) for c in self.calls]}"
                    )
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    continue
        return result

    async def wait_replies(self, chat_id: int, count: int, timeout: float = 30.0) -> list[Call]:
        return await self.wait_for(
            lambda: (r := self.replies(chat_id)) and len(r) >= count and r,
            timeout,
            f"{count} replies in chat {chat_id}",
        )

    # --- updates' contents --------------------------------------------------------------------------------------

    def message(
        self,
        chat: dict,
        sender: dict | None,
        *,
        text: str | None = None,
        caption: str | None = None,
        photo: tuple | None = None,
        document: tuple | None = None,
        mime_type: str = "image/jpeg",
        media_group_id: str | None = None,
        reply_to: dict | None = None,
        sender_chat: dict | None = None,
        spoiler: bool = False,
        topic: int | None = None,
    ) -> dict:
        """A message from `sender`; with `sender_chat`, written as that group or channel (Telegram then puts
        a shared account in `from`: GroupAnonymousBot for the group itself, Channel_Bot for a channel); with
        `spoiler`, its photo is behind a spoiler (`has_media_spoiler`); with `topic`, it is in that topic of a
        forum (`forum()`), as Telegram marks it: `message_thread_id` and `is_topic_message`, and, unless it
        replies to another, a reply to the topic's opening message (its "topic created" notice)."""
        self._chats[chat["id"]] = chat
        message = {"message_id": next(self._message_ids), "date": int(time.time()), "chat": chat}
        if topic is not None:
            if not chat.get("is_forum"):
                raise ValueError(f"chat {chat['id']} has no topics: make it with forum()")
            self._in_topic(message, topic)
        if sender_chat is not None:
            shared = 1087968824 if sender_chat["id"] == chat["id"] else 136817688
            message["from"] = {
                "id": shared,
                "is_bot": True,
                "first_name": "Group" if shared == 1087968824 else "Channel",
                "username": "GroupAnonymousBot" if shared == 1087968824 else "Channel_Bot",
            }
            message["sender_chat"] = sender_chat
        elif sender is not None:
            message["from"] = sender
        elif chat["type"] == "channel":
            message["sender_chat"] = chat
        if text is not None:
            message["text"] = text
            message["entities"] = _entities(text)
        if caption is not None:
            message["caption"] = caption
            message["caption_entities"] = _entities(caption)
        if photo is not None:
            file_id, unique, size = photo
            message["photo"] = [
                {"file_id": file_id, "file_unique_id": unique, "width": 64, "height": 64, "file_size": size}
            ]
            if spoiler:
                message["has_media_spoiler"] = True
        if document is not None:
            file_id, unique, size = document
            message["document"] = {
                "file_id": file_id,
                "file_unique_id": unique,
                "file_name": "photo.bin",
                "mime_type": mime_type,
                "file_size": size,
            }
        if media_group_id:
            message["media_group_id"] = media_group_id
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        elif topic is not None:
            opening = {"message_id": topic, "date": message["date"], "chat": chat, "from": user(1)}
            opening["forum_topic_created"] = {"name": f"Topic {topic}", "icon_color": 7322096}
            self._in_topic(opening, topic)
            message["reply_to_message"] = opening
        return message

    def _in_topic(self, message: dict, topic: int | None) -> None:
        if topic is not None:
            message["message_thread_id"], message["is_topic_message"] = topic, True
            self._topics[(message["chat"]["id"], message["message_id"])] = topic

    def _thread_refusal(self, params: dict) -> str | None:
        """Telegram refuses a topic named in a chat that has none (message_thread_id is for forums only)."""
        if params.get("message_thread_id") is None:
            return None
        chat = self._chats.get(int(params.get("chat_id", 0)), {})
        return None if chat.get("is_forum") else "message thread not found"

    def _topic_of_send(self, chat_id: int, params: dict) -> int | None:
        """Where a message the bot sends lands: the topic it names; else that of the message it replies to, if
        that is still there; else the chat itself (a forum's General)."""
        if params.get("message_thread_id") is not None:
            return int(params["message_thread_id"])
        parameters = params.get("reply_parameters") or {}
        replied = parameters.get("message_id", params.get("reply_to_message_id"))
        return self._topics.get((chat_id, int(replied))) if replied is not None else None

    def delete(self, message: dict) -> None:
        """Its sender deleted `message`: a reply to it is sent without the quote (allow_sending_without_reply), so
        in a forum it lands in General unless it names its topic."""
        self._topics.pop((message["chat"]["id"], message["message_id"]), None)

    def bot_message(self, call: Call) -> dict:
        """The message the bot sent with `call`, as it would appear in a reply_to_message."""
        return call.params["_result"]

    # --- handlers -----------------------------------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params = await _params(request)
        if method == "getUpdates":
            return _ok(await self._get_updates(params))
        call = Call(method, params)
        self.calls.append(call)
        if method in self.latency:
            await asyncio.sleep(self.latency[method])
        if method in self.held:
            await self._notify()  # the request is seen while it waits
            await self.held[method].wait()
        try:
            if self._failures.get(method):
                body = self._failures[method].pop(0)
                call.refused = True
                return web.json_response(body, status=body["error_code"])
            result = self._answer(method, params)
            call.refused = isinstance(result, web.Response) and result.status >= 400  # Telegram would refuse it
            params["_result"] = result
            return _ok(result) if not isinstance(result, web.Response) else result
        finally:
            await self._notify()

    async def _get_updates(self, params: dict) -> list[dict]:
        offset = int(params.get("offset") or 0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        async with self._changed:
            while not self._updates and time.monotonic() < deadline:
                try:
                    await asyncio.wait_for(self._changed.wait(), deadline - time.monotonic())
                except TimeoutError:
                    break
        return self._updates[: int(params.get("limit") or 100)]

    def _answer(self, method: str, params: dict):
        bot = {"id": BOT_ID, "is_bot": True, "first_name": "clipchat", "username": USERNAME}
        if method == "getMe":
            return {
                **bot,
                "can_join_groups": True,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            }
        if method == "getFile":
            file_id = params["file_id"]
            if file_id not in self.files:
                return web.json_response(
                    {"ok": False, "error_code": 400, "description": "Bad Request: invalid file_id"}, status=400
                )
            data = self.files[file_id]
            if len(data) > 20 * 1024 * 1024:
                return web.json_response(
                    {"ok": False, "error_code": 400, "description": "Bad Request: file is too big"}, status=400
                )
            return {
                "file_id": file_id,
                "file_unique_id": file_id[5:],
                "file_size": len(data),
                "file_path": f"photos/{file_id}.jpg",
            }
        if method in ("sendMessage", "sendPhoto", "sendDocument", "editMessageCaption", "editMessageText"):
            refusal = _refusal(params) or self._thread_refusal(params)
            if refusal:
                return web.json_response(
                    {"ok": False, "error_code": 400, "description": f"Bad Request: {refusal}"}, status=400
                )
            chat_id = int(params["chat_id"]) if "chat_id" in params else 0
            message = {
                "message_id": int(params.get("message_id") or next(self._message_ids)),
                "date": int(time.time()),
                "chat": self._chats.get(chat_id, {"id": chat_id, "type": "private"}),
                "from": bot,
            }
            if "text" in params:
                message["text"] = params["text"]
            if "caption" in params:
                message["caption"] = params["caption"]
            markup = params.get("reply_markup")
            markup = json.loads(markup) if isinstance(markup, str) else markup
            if isinstance(markup, dict) and "inline_keyboard" in markup:  # a message carries its inline buttons
                message["reply_markup"] = markup
            if method == "sendPhoto":
                message["photo"] = [{"file_id": params["photo"], "file_unique_id": "u", "width": 64, "height": 64}]
            if method == "sendDocument":
                message["document"] = {"file_id": params["document"], "file_unique_id": "u"}
            if method.startswith("send"):
                self._in_topic(message, self._topic_of_send(chat_id, params))
            return message
        if method == "sendMessageDraft":
            refusal = self._draft_refusal(params)
            if refusal:
                return web.json_response(
                    {"ok": False, "error_code": 400, "description": f"Bad Request: {refusal}"}, status=400
                )
            return True
        if method == "getChatMember":
            user = {"id": int(params["user_id"]), "is_bot": False, "first_name": "Someone"}
            if int(params["user_id"]) in self.admins.get(int(params["chat_id"]), set()):
                return {"status": "creator", "user": user, "is_anonymous": False}
            return {"status": "member", "user": user}
        if method == "setWebhook":
            self.webhook = {"url": params["url"], "secret_token": params.get("secret_token")}
            return True
        if method == "deleteWebhook":
            self.webhook = None
            return True
        if method == "getWebhookInfo":
            return {
                "url": (self.webhook or {}).get("url", ""),
                "has_custom_certificate": False,
                "pending_update_count": 0,
            }
        if method == "sendChatAction" and (refusal := self._thread_refusal(params)):
            return web.json_response(
                {"ok": False, "error_code": 400, "description": f"Bad Request: {refusal}"}, status=400
            )
        if method in ("sendChatAction", "setMyCommands", "answerCallbackQuery", "deleteMessage", "close", "logOut"):
            return True
        return web.json_response({"ok": False, "error_code": 404, "description": f"Not Found: {method}"}, status=404)

    def _draft_refusal(self, params: dict) -> str | None:
        """What Telegram refuses in a draft (Bot API 10.0): a chat that is not private, a draft_id of 0, more than
        4,096 characters. An empty text is allowed: Telegram shows "Thinking…" for it."""
        chat_id = int(params.get("chat_id") or 0)
        kind = self._chats.get(chat_id, {}).get("type", "private" if chat_id > 0 else "supergroup")
        if kind != "private":
            return "drafts can be sent to private chats only"
        if not int(params.get("draft_id") or 0):
            return "draft_id must be non-zero"
        if _utf16(params.get("text") or "") > TEXT_LIMIT:
            return "message is too long"
        return None

    async def _file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        file_id = request.match_info["path"].removeprefix("photos/").removesuffix(".jpg")
        if file_id not in self.files:
            return web.Response(status=404)
        fault = self.download_status.get(file_id)
        if fault == "hang":
            await self._closing.wait()
            return web.Response(status=503)
        if fault == "truncate":  # promise the whole file, send half, hang up
            response = web.StreamResponse(headers={"Content-Length": str(len(self.files[file_id]))})
            await response.prepare(request)
            await response.write(self.files[file_id][: len(self.files[file_id]) // 2])
            request.transport.close()
            return response
        if fault is not None:  # in plain text, as a file server answers, not the Bot API's JSON
            return web.Response(status=fault, text=f"{fault}: {HTTPStatus(fault).phrase}")
        return web.Response(body=self.files[file_id], content_type="application/octet-stream")


TEXT_LIMIT, CAPTION_LIMIT = 4096, 1024  # UTF-16 code units, as Telegram counts them


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _refusal(params: dict) -> str | None:
    """What Telegram would refuse in a message the bot sends: too long, empty, or legacy Markdown with an
    entity left open. Lengths are UTF-16 units of the text as shown (after Markdown), the stricter of the
    counts Telegram has been seen to use. MarkdownV2 and HTML are not checked: the bot sends neither."""
    for name, limit, too_long in (
        ("text", TEXT_LIMIT, "message is too long"),
        ("caption", CAPTION_LIMIT, "message caption is too long"),
    ):
        if name not in params:
            continue
        shown, broken_at = params[name], None
        if params.get("parse_mode") in ("Markdown", "markdown"):
            shown, broken_at = _legacy_markdown(params[name])
        if broken_at is not None:
            return f"can't parse entities: Can't find end of the entity starting at byte offset {broken_at}"
        if name == "text" and not shown.strip():
            return "message text is empty"
        if _utf16(shown) > limit:
            return too_long
    return None


def _legacy_markdown(text: str) -> tuple[str, int | None]:
    """(the text as shown, the byte offset of an entity that never ends, or None).

    *bold*, _italic_, `code` and ```pre``` must close; [text](url) shows its text, and a [ that
    no ]( follows is plain text, as Telegram's parser has it; a backslash escapes _ * ` [.
    """
    shown, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "_*`[":
            shown.append(text[i + 1])
            i += 2
            continue
        mark = "```" if text.startswith("```", i) else text[i] if text[i] in "*_`" else None
        if mark is not None:
            end = text.find(mark, i + len(mark))
            if end < 0:
                return "".join(shown), len(text[:i].encode())
            shown.append(text[i + len(mark) : end])
            i = end + len(mark)
            continue
        if text[i] == "[":
            close = text.find("]", i + 1)
            if close >= 0 and text.startswith("(", close + 1):
                url_end = text.find(")", close + 2)
                shown.append(text[i + 1 : close])
                i = url_end + 1 if url_end >= 0 else len(text)
                continue
        shown.append(text[i])
        i += 1
    return "".join(shown), None


def _ok(result) -> web.Response:
    return web.json_response({"ok": True, "result": result})


async def _params(request: web.Request) -> dict:
    params = dict(request.query)
    if request.body_exists:
        if request.content_type == "application/json":
            params.update(await request.json())
        else:  # form-encoded or multipart; PTB sends complex values as JSON strings
            for key, value in (await request.post()).items():
                params[key] = value.file.read() if hasattr(value, "file") else value
    for key, value in params.items():
        if key not in ("text", "caption") and isinstance(value, str) and value[:1] in "{[":
            params[key] = json.loads(value)  # reply_markup, entities...: never what a person wrote
    return params


def _entities(text: str) -> list[dict]:
    """Mention and command entities, with offsets in UTF-16 units as Telegram counts them."""
    entities = []
    for match in re.finditer(r"@\w+|^/\w+(?:@\w+)?", text):
        offset = len(text[: match.start()].encode("utf-16-le")) // 2
        length = len(match.group().encode("utf-16-le")) // 2
        entities.append(
            {"type": "bot_command" if match.group().startswith("/") else "mention", "offset": offset, "length": length}
        )
    return entities


def user(user_id: int, language_code: str | None = None) -> dict:
    """A person; `language_code` is their Telegram app's language, as Telegram puts it in `from` ("ru", "zh-hans")."""
    person = {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"}
    if language_code is not None:
        person["language_code"] = language_code
    return person


def private(user_id: int) -> dict:
    return {"id": user_id, "type": "private", "first_name": f"User {user_id}"}


def group(chat_id: int = -100123) -> dict:
    return {"id": chat_id, "type": "supergroup", "title": "Test group"}


def forum(chat_id: int = -100321) -> dict:
    """A supergroup with topics: messages in a topic carry its id (`message(..., topic=11)`), its General none."""
    return {"id": chat_id, "type": "supergroup", "title": "Test forum", "is_forum": True}


def channel(chat_id: int = -100999) -> dict:
    return {"id": chat_id, "type": "channel", "title": "Test channel"}
