"""Open questions answered by a model server: `transformers serve` on loopback serving the world's chat model.

No mock: every reply here was written by the world's chat model in a real OpenAI-compatible server, reached
through the `openai` client; a loopback proxy (tests/answer_server.py) plays the server's faults (429s, a
stream cut short, slowness). One server per test run (`answer_server` in conftest): it starts in some 15 s, and each test gets a proxy.
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import time

import pytest
from PIL import Image
from pydantic import SecretStr

from bot.core.settings import BotSettings
from bot.engine import AnswerRequest, Draft, LocalModels, ModelFeatures
from bot.engine.circuit import CircuitState
from bot.engine.served import AnswerServer, ServedModels
from clipchat.errors import InvalidConfig
from dialogue import Answer, Conversation
from dialogue.elsewhere import SERVER_DOWN
from tests.answer_server import FaultProxy, free_port
from tests.bot_helpers import jpeg, send_photo, send_text
from tests.conftest import BOT_TOKEN
from tests.fake_telegram import private, user
from tests.fault_table import Try, Watch, account
from tests.test_answer_model import EVALUATION_QUESTIONS, judged_right, photos_and_facts, right_rate

__all__ = ["photos_and_facts"]  # the fixture, shared with test_answer_model: the same photos, the same run

OPEN = "what is the background like?"  # routed to the answer model, not to CLIP
SECRET = "sk-clipchat-test-4f9a1c77e2b04d2c"


@pytest.fixture
async def served(world_models, world_dir, proxy):
    """`ServedModels(**options)`: the world's models in this process, open questions through the proxy."""
    made = []

    def make(**options) -> ServedModels:
        server = AnswerServer(proxy.url, str(world_dir / "chat"), **{"deadline_s": 30.0, **options})
        made.append(ServedModels(LocalModels(ModelFeatures(world_models), timeout=60), server))
        return made[-1]

    yield make
    for models in made:
        await models.close()


async def test_open_questions_are_answered_through_the_server_as_well_as_in_process(
    world_models, photos_and_facts, served, figure
) -> None:
    """The acceptance figure: the same held-out photos and questions, in-process and through the server."""
    photos, facts = photos_and_facts
    local_rate, _ = right_rate(world_models, photos, facts)  # 3 sampled candidates, reranked; once per run
    models = served(candidates=3, concurrency=4)

    async def right(held, stored, question: str) -> tuple[bool, str]:
        reply = await models.answer(AnswerRequest(Conversation(stored), question))
        return judged_right(question, reply, held.scene), f"{held.scene.caption} | {question} -> {reply.text}"

    started = time.monotonic()
    judged = await asyncio.gather(*(right(h, s, q) for h, s in zip(photos, facts) for q in EVALUATION_QUESTIONS))
    served_s = time.monotonic() - started
    served_rate = sum(ok for ok, _ in judged) / len(judged)
    figure(f"open questions answered right in-process ({len(judged)} questions)", local_rate)
    figure(f"the same answered right through transformers serve (3 replies each, {served_s:.1f} s)", served_rate)
    assert served_rate >= local_rate - 0.02, "\n".join(line for ok, line in judged if not ok)[:3000]
    assert models.circuit.state == CircuitState.CLOSED


async def test_the_servers_words_arrive_as_drafts_then_the_checked_answer(served, proxy, world_models, understood):
    models = served()
    stored = world_models.describe([understood[0].image])[0]
    events = [event async for event in models.answer_stream(AnswerRequest(Conversation(stored), OPEN))]
    *drafts, final = events
    assert isinstance(final, Answer) and final.route == "open" and "candidates" in final.details
    assert len(drafts) >= 2 and all(isinstance(draft, Draft) for draft in drafts)
    assert all(later.text.startswith(earlier.text) for earlier, later in itertools.pairwise(drafts))  # growing
    assert final.text in drafts[-1].text  # what CLIP accepted is what was written, its first sentence
    [asked] = proxy.questions
    assert asked.body["stream"] is True
    system, question = asked.body["messages"]
    assert system["role"] == "system" and stored.caption in system["content"] and question["content"] == OPEN


async def test_questions_clip_answers_never_reach_the_server(served, proxy, world_models, understood):
    models = served()
    stored = world_models.describe([understood[0].image])[0]
    reply = await models.answer(AnswerRequest(Conversation(stored), "what colour is it?"))
    assert reply.route == "colour" and understood[0].scene.colour in reply.text.lower()
    assert proxy.questions == []


async def test_a_served_reply_that_contradicts_the_photo_is_refused(served, world_models, understood):
    """The chat model repeats the facts it is given; told the wrong colour, its reply is stopped by CLIP."""
    from dataclasses import replace

    from clipchat.facts import PhotoFacts
    from tests.world.scenes import COLOURS

    held = understood[0]
    stored = world_models.describe([held.image])[0]
    wrong = next(colour for colour in COLOURS if colour != held.scene.colour)
    tags = tuple(replace(tag, label=wrong) if tag.label == held.scene.colour else tag for tag in stored.tags)
    lied = PhotoFacts(stored.caption.replace(held.scene.colour, wrong), tags, stored.embedding, stored.model)
    # words no route claims (a remark, not a question, for routing): the open path, the chat model's "It is <colour>."
    reply = await served(candidates=3).answer(AnswerRequest(Conversation(lied), "its colour"))
    assert wrong not in reply.text.split("What I can see is:")[0]
    assert wrong in reply.details["refused"].values()


async def test_a_model_that_sees_images_gets_the_photo_as_a_small_jpeg(served, proxy, world_models, understood):
    stored = world_models.describe([understood[0].image])[0]
    photo = jpeg(understood[0].image.resize((1600, 1200)))
    reply = await served(sees_images=True).answer(AnswerRequest(Conversation(stored), OPEN, photo=photo))
    blind = await served().answer(AnswerRequest(Conversation(stored), OPEN, photo=photo))
    assert reply.route == blind.route == "open"  # a text-only model on transformers serve reads the words
    seeing, not_seeing = (asked.body["messages"][-1]["content"] for asked in proxy.questions)
    assert not_seeing == OPEN
    text, image = seeing
    assert text == {"type": "text", "text": OPEN}
    url = image["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.format == "JPEG" and max(sent.size) == 512


def test_answer_server_settings_that_cannot_work_together_are_refused_in_one_line(tmp_path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(SECRET + "\n")
    refused = {
        "needs CLIPCHAT_ANSWER_SERVER_MODEL": {"answer_url": "http://localhost:11434/v1"},
        "set without CLIPCHAT_ANSWER_URL": {"answer_server_model": "llama3.2", "answer_api_key": SECRET},
        "must be an http:// or https:// URL": {"answer_url": "localhost:11434", "answer_server_model": "m"},
        "not both": {"answer_url": "http://h/v1", "answer_server_model": "m", "answer_api_key": SECRET}
        | {"answer_api_key_file": key_file},
        "could not read CLIPCHAT_ANSWER_API_KEY_FILE": {"answer_url": "http://h/v1", "answer_server_model": "m"}
        | {"answer_api_key_file": tmp_path / "missing"},
    }
    for reason, fields in refused.items():
        with pytest.raises(InvalidConfig) as refusal:
            BotSettings(token=BOT_TOKEN, **fields).answer_server()
        assert reason in refusal.value.detail and "\n" not in refusal.value.detail
        assert SECRET not in refusal.value.detail
    assert BotSettings(token=BOT_TOKEN).answer_server() is None
    server = BotSettings(
        token=BOT_TOKEN,
        answer_url="https://me:pw@example.org/api/v1/",
        answer_server_model="m",
        answer_api_key_file=key_file,
    ).answer_server()
    assert server is not None and server.key is not None and server.key.get_secret_value() == SECRET
    assert SECRET not in repr(server) and server.shown == "https://example.org/api/v1"


def test_doctor_online_asks_the_server_for_its_models(answer_server, world_dir) -> None:
    from bot.ops.doctor import FAIL, OK, check_answer_server

    def check(url: str, model: str):
        settings = BotSettings(token=BOT_TOKEN, answer_url=url, answer_server_model=model)
        return check_answer_server(settings, online=True, timeout_s=10)

    served = str(world_dir / "chat")
    assert check(f"{answer_server.url}/v1", served).status == OK
    wrong = check(f"{answer_server.url}/v1", "llama3.2")
    assert wrong.status == FAIL and served in wrong.detail and "CLIPCHAT_ANSWER_SERVER_MODEL" in wrong.fix
    assert check(f"http://127.0.0.1:{free_port()}/v1", served).status == FAIL


# --- fault rows: the bot, the fake Bot API and the answer server behind the proxy ----------------------------------


def told(text: str) -> bool:
    return text.startswith(SERVER_DOWN)


async def started_with_server(start_bot, bot_settings, world_dir, url: str, **settings):
    return await start_bot(
        bot_settings.model_copy(
            update={"answer_url": url, "answer_server_model": str(world_dir / "chat"), "answer_cooldown_s": 1}
            | settings
        )
    )


async def asked(telegram, number: int, image, questions: int = 1) -> tuple[list[Try], list[str]]:
    """A photo in chat `number`, then open questions one after another: the tries and the replies they heard."""
    chat, person = private(number), user(number)
    send_photo(telegram, chat, person, image)
    await telegram.wait_replies(number, 1, timeout=60)
    tries, heard = [], []
    for count in range(questions):
        message = send_text(telegram, chat, person, OPEN)
        tries.append(Try(number, message["message_id"], answer=True))
        heard.append((await telegram.wait_replies(number, 2 + count, timeout=60))[-1].text)
    return tries, heard


async def test_answer_server_429s_are_retried_and_every_question_answered_or_told(
    start_bot, telegram, bot_settings, world_dir, proxy, understood
):
    # model_copy does not validate: the key as the settings hold it
    app = await started_with_server(start_bot, bot_settings, world_dir, proxy.url, answer_api_key=SecretStr(SECRET))
    proxy.fail(10, 429)
    before = {name: metric(name, labels) for name, labels in METRICS.items()}
    with Watch() as watch:
        tries, heard = await asked(telegram, 8600, understood[0].image, questions=4)
    counted = {name: metric(name, labels) - before[name] for name, labels in METRICS.items()}
    row = await account("answer server: 10 x 429", telegram, app.bot_data.services.sessions, tries, watch)
    assert (row.lost, row.crashes) == (0, 0), watch.tracebacks()
    assert len(proxy.questions) >= 12  # 10 refused, then written
    assert not told(heard[-1]) and app.bot_data.services.models.circuit.state == CircuitState.CLOSED
    assert {seen.authorization for seen in proxy.questions} == {f"Bearer {SECRET}"}
    assert SECRET not in watch.text()
    assert counted["clipchat_answer_backend_errors_total"] == 10  # each refused try, per backend and kind
    assert counted["clipchat_answer_backend_tokens_total"] > 0 and counted["clipchat_answer_backend_seconds_count"] == 2


METRICS = {
    "clipchat_answer_backend_errors_total": {"backend": "served", "kind": "rate_limited"},
    "clipchat_answer_backend_tokens_total": {"backend": "served", "direction": "completion"},
    "clipchat_answer_backend_seconds_count": {"backend": "served"},
}


def metric(name: str, labels: dict[str, str]) -> float:
    from clipchat.metrics import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_answer_server_killed_mid_stream_is_told_and_answers_once_restarted(
    start_bot, telegram, bot_settings, world_dir, answer_server, proxy, understood
):
    """The server (and its model's process) killed with SIGKILL two deltas into an answer: that question and the
    next, asked of a dead server, are told; once it is started again, questions are answered."""
    app = await started_with_server(start_bot, bot_settings, world_dir, proxy.url)
    proxy.cut_streams(1)
    proxy.when_cut = answer_server.kill
    try:
        with Watch() as watch:
            tries, heard = await asked(telegram, 8610, understood[1].image, questions=2)
            assert proxy.cut == 1 and answer_server.process.poll() is not None  # dead
            await asyncio.to_thread(answer_server.start)  # restarted, on the same port
            more, heard_more = await asked(telegram, 8611, understood[1].image)
    finally:
        if answer_server.process.poll() is not None:
            answer_server.start()  # the module's other tests need it
    row = await account(
        "answer server killed mid-stream, then restarted", telegram, app.bot_data.services.sessions, tries + more, watch
    )
    assert (row.lost, row.crashes) == (0, 0), watch.tracebacks()
    assert all(told(text) for text in heard) and understood[1].scene.shape in heard[0]  # the caption, still
    assert not told(heard_more[0]) and app.bot_data.services.models.circuit.state == CircuitState.CLOSED


async def test_answer_server_slower_than_the_deadline_is_told(
    start_bot, telegram, bot_settings, world_dir, proxy, understood
):
    app = await started_with_server(start_bot, bot_settings, world_dir, proxy.url, answer_deadline_s=1)
    proxy.delay_s = 3
    with Watch() as watch:
        tries, heard = await asked(telegram, 8620, understood[2].image)
        proxy.delay_s = 0
        more, heard_more = await asked(telegram, 8621, understood[2].image)
    row = await account(
        "answer server slower than its deadline (3 s, 1 s)",
        telegram,
        app.bot_data.services.sessions,
        tries + more,
        watch,
    )
    assert (row.lost, row.crashes) == (0, 0), watch.tracebacks()
    assert told(heard[0]) and not told(heard_more[0])


async def test_answer_server_gone_at_start_up_opens_the_circuit_which_closes_once_it_is_back(
    start_bot, telegram, bot_settings, world_dir, answer_server, understood
):
    later = FaultProxy(answer_server.url)  # its port taken by nothing yet
    app = await started_with_server(start_bot, bot_settings, world_dir, later.url, answer_cooldown_s=5)
    circuit = app.bot_data.services.models.circuit
    waiting = [(private(8640 + n), user(8640 + n)) for n in range(2)]
    for n, (chat, person) in enumerate(waiting):  # their photos first: below, only questions race the cool-down
        send_photo(telegram, chat, person, understood[5 + n].image)
        await telegram.wait_replies(chat["id"], 1, timeout=60)

    async def question(chat: dict, person: dict) -> tuple[Try, str]:
        message = send_text(telegram, chat, person, OPEN)
        reply = (await telegram.wait_replies(chat["id"], 2, timeout=60))[-1].text
        return Try(chat["id"], message["message_id"], answer=True), reply

    try:
        with Watch() as watch:
            # 5 people ask at once: each question retried, then told; 5 in a row open the circuit
            results = await asyncio.gather(*(asked(telegram, 8630 + n, understood[n].image) for n in range(5)))
            assert circuit.state == CircuitState.OPEN
            await later.start()  # the server is back, but the circuit is open: not asked during the cool-down
            open_try, open_heard = await question(*waiting[0])
            assert circuit.state == CircuitState.OPEN and later.questions == []
            await asyncio.sleep(5.2)  # the cool-down: one question tries the server again
            back_try, back_heard = await question(*waiting[1])
        tries = [t for ts, _ in results for t in ts] + [open_try, back_try]
        row = await account(
            "answer server gone at start-up, then back", telegram, app.bot_data.services.sessions, tries, watch
        )
    finally:
        await later.stop()
    assert (row.lost, row.crashes) == (0, 0), watch.tracebacks()
    assert all(told(text) for _, heard in results for text in heard) and told(open_heard)
    assert not told(back_heard) and circuit.state == CircuitState.CLOSED
    assert len(later.questions) == 1  # the trial question, answered


async def test_a_private_chat_sees_the_servers_answer_as_drafts_before_the_reply(
    start_bot, telegram, bot_settings, world_dir, proxy, understood
):
    """The server streams its reply; a private chat shows the words as they come (sendMessageDraft), then the
    answer CLIP accepted, as it does for the in-process model."""
    await started_with_server(start_bot, bot_settings, world_dir, proxy.url, draft_every_ms=0)
    chat, person = private(8700), user(8700)
    send_photo(telegram, chat, person, understood[0].image)
    await telegram.wait_replies(8700, 1, timeout=60)
    question = send_text(telegram, chat, person, OPEN)
    answer = (await telegram.wait_replies(8700, 2, timeout=60))[-1]
    drafts = telegram.drafts(8700)
    assert drafts and drafts[0].at < answer.at, "no draft of the server's words reached Telegram before the reply"
    assert {draft.draft_id for draft in drafts} == {question["message_id"]}
    assert all(len(later.text) > len(earlier.text) for earlier, later in itertools.pairwise(drafts))
    assert proxy.questions, "the answer did not come from the server"
