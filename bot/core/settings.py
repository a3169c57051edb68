"""Bot settings, read once from the environment or `.env` (prefix CLIPCHAT_; the token as TELEGRAM_BOT_TOKEN)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from clipchat.errors import InvalidConfig, OperatorError
from clipchat.kinds import AnswerFallback

from .heartbeat import EXIT_STUCK, HEARTBEAT_S, MISSED_BEATS, STUCK_EXIT_S

if TYPE_CHECKING:  # the engine imports torch: not for `clipchat doctor --alive`, which reads these settings
    from ..engine.served import AnswerServer

# BotFather's tokens look like 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw
TOKEN_PATTERN = re.compile(r"^\d{3,}:[A-Za-z0-9_-]{30,}$")
BOTFATHER_HINT = (
    "Open Telegram, talk to @BotFather, send /newbot and follow the steps; then put the token it "
    "gives you in TELEGRAM_BOT_TOKEN (or in a file named by TELEGRAM_BOT_TOKEN_FILE)."
)


class TokenProblem(OperatorError):
    """No usable bot token: the message says how to get one."""


class BotSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLIPCHAT_", env_file=".env", extra="ignore", populate_by_name=True)

    token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("TELEGRAM_BOT_TOKEN", "CLIPCHAT_TOKEN"),
        description="The bot token from @BotFather (/newbot, or /mybots > API Token).",
    )
    token_file: Path | None = Field(
        None,
        validation_alias=AliasChoices("TELEGRAM_BOT_TOKEN_FILE", "CLIPCHAT_TOKEN_FILE"),
        description="A file holding the token instead (Docker and systemd secrets keep it out of the environment).",
    )
    base_url: str = Field(
        "https://api.telegram.org/bot",
        description="Bot API URL; point it at your own telegram-bot-api server "
        "(https://github.com/tdlib/telegram-bot-api) to lift the 20 MB download limit.",
    )
    base_file_url: str = Field("https://api.telegram.org/file/bot", description="Bot API file download URL.")
    local_mode: bool = Field(
        False,
        description="The Bot API server is your own telegram-bot-api started with --local: photos are read from "
        "its disk instead of downloaded.",
    )
    allowed_users: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated user ids; if set, only these people (and every chat in "
        "CLIPCHAT_ALLOWED_CHATS) are served. Unset with no allowed chats: everyone. An operator's /allow "
        "adds one person, /ban shuts one out, in every chat (both kept in the database).",
    )
    allowed_chats: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated chat ids (groups and channels are negative); if set, everyone in these "
        "chats (and each person in CLIPCHAT_ALLOWED_USERS) is served.",
    )
    admin_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated user ids of the operators: always served, never counted against a "
        "budget, may change /settings in any chat, and use /stats, /allow, /ban, /unban, /usage and /quota.",
    )
    user_queue: int = Field(
        16,
        ge=1,
        le=1000,
        description="Updates one user may have waiting; beyond that the extra ones are dropped and the "
        "user is asked, once, to slow down.",
    )
    max_concurrent_updates: int = Field(
        512,
        ge=1,
        le=10_000,
        description="Updates in progress at once, all users together (one user's run one after another); "
        "more wait for a free place. The connection pool to Telegram is sized to it.",
    )
    max_batch: int = Field(
        16,
        ge=1,
        le=1024,
        description="Micro-batching: the most photos (or questions) run through the models together; "
        "`clipchat bench` suggests a value for this machine.",
    )
    max_wait_ms: float = Field(
        30.0,
        ge=0,
        le=5000,
        description="How long a request waits for others to batch with. Photos wait only while "
        "more are being decoded, up to this long past the latest to arrive "
        "(at most CLIPCHAT_MAX_BATCH times it); search phrases this long.",
    )
    decode_workers: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Photos decoded at once (each may briefly take 200 MB); default: the CPU count, at most 4.",
    )
    decode_memory_mb: int = Field(
        512,
        ge=64,
        le=65536,
        description="Memory photos being decoded may take at once, all users together "
        "(a crafted 95 KB PNG can decode to 300 MB); more waits its turn.",
    )
    download_memory_mb: int = Field(
        128,
        ge=32,
        le=65536,
        description="Bytes the photos being downloaded and described may hold at once, all users together, "
        "counted by the size Telegram declares before each download (reading one briefly takes about twice "
        "that); album photos may hold three quarters of it. A photo that finds no room within a minute is "
        "answered 'busy, try again'. Raised to the largest file the bot takes.",
    )
    vision_queue: int = Field(
        256, ge=1, le=100_000, description="Requests waiting for the models before users get 'busy'."
    )
    model_timeout_s: float = Field(
        120,
        ge=1,
        le=3600,
        description="Longest a user waits for the models (queue included) before "
        "hearing 'try again'; a batch running longer fails the health "
        "check, and CLIPCHAT_STUCK_EXIT_S later the bot exits (status "
        f"{EXIT_STUCK}) for its service manager to restart it: a hung GPU never raises.",
    )
    stuck_exit_s: float = Field(
        STUCK_EXIT_S,
        ge=0,
        le=3600,
        description="How long a batch may run past CLIPCHAT_MODEL_TIMEOUT_S before the bot "
        f"gives up on the model thread and exits with status {EXIT_STUCK}, so that systemd "
        "(Restart=on-failure) or Docker (restart: unless-stopped) starts it afresh.",
    )
    heartbeat_s: float = Field(
        HEARTBEAT_S,
        ge=1,
        le=600,
        description="How often the bot touches its heartbeat file and checks that the models "
        f"are moving; `clipchat doctor --alive` fails after {MISSED_BEATS} intervals without a beat.",
    )
    download_timeout_s: float = Field(
        60, ge=1, le=3600, description="Longest a photo's download from Telegram may take, all of it."
    )
    album_wait_s: float = Field(1.0, gt=0, le=60, description="Quiet time after an album's last photo before replying.")
    search_results: int = Field(3, ge=1, le=10, description="At most this many photos answer /search.")
    max_labels: int = Field(
        20,
        ge=2,
        le=200,
        description="Labels one /tags may weigh: each costs CLIP text passes on the model thread every user shares.",
    )
    max_question_chars: int = Field(
        1000,
        ge=50,
        le=2000,
        description="Characters of a question the models read; the user is told when theirs was longer.",
    )
    max_label_chars: int = Field(60, ge=8, le=300, description="Characters in one /tags label.")
    daily_photos_per_user: int = Field(
        300,
        ge=0,
        le=1_000_000,
        description="Photos one user may have looked at per day (UTC), all chats "
        "together; 0: no limit. Operators are never limited; "
        "/quota changes it for one chat.",
    )
    daily_questions_per_user: int = Field(
        600,
        ge=0,
        le=1_000_000,
        description="Questions (and /tags, /mood, /search) one user may ask per day (UTC), all chats "
        "together; 0: no limit.",
    )
    daily_photos_per_group: int = Field(
        3000,
        ge=0,
        le=1_000_000,
        description="Photos one group or channel may have looked at per day, "
        "unaddressed ones kept for /search included; 0: no limit.",
    )
    daily_questions_per_group: int = Field(
        3000,
        ge=0,
        le=1_000_000,
        description="Questions (and /tags, /mood, /search) one group or channel may ask per day, all its "
        "members together; 0: no limit.",
    )
    rate_limit_per_second: float = Field(
        30,
        gt=0,
        le=1000,
        description="Messages per second, all chats together (Telegram's flood limit); with N bot "
        "processes serving one bot, give each 30 / N.",
    )
    rate_limit_per_group_minute: float = Field(
        20, gt=0, le=1000, description="Messages per minute in one group (Telegram's flood limit)."
    )
    send_retries: int = Field(3, ge=0, le=10, description="Retries of a send after flood control or a network error.")
    draft_every_ms: int = Field(
        300,
        ge=0,
        le=10_000,
        description="In a private chat, an answer the language model is writing is shown as it grows (a Telegram "
        "draft), at most this often and only when words were added; 0: each time they are. Groups and channels "
        "get answers whole.",
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="Secret token Telegram sends with each webhook call, checked before a request's body is read; "
        "default: a random one per start (several processes behind one URL need the same one).",
    )
    webhook_listen: str = Field(
        "0.0.0.0",
        description="Address the webhook server listens on. It serves plain HTTP: a reverse proxy in front "
        "terminates TLS; 127.0.0.1 when the proxy runs on this machine.",
    )
    webhook_port: int = Field(8443, ge=1, le=65535, description="Port the webhook server listens on.")
    maintenance_hours: float = Field(
        6,
        ge=0.1,
        le=24 * 7,
        description="How often the database maintenance job runs: it refreshes the planner's statistics, "
        "trims SQLite's log and logs row counts and how busy the models were.",
    )
    inference: Literal["local", "ray"] = Field(
        "local",
        description="Where the models run: local (in this "
        "process) or ray (the vision application "
        "started by `clipchat vision-server`).",
    )
    ray_address: str | None = Field(
        None,
        description="With CLIPCHAT_INFERENCE=ray: the Ray cluster, e.g. auto or "
        "ray://head:10001; default: start or join a local one.",
    )
    shared_ordering: bool = Field(
        False,
        description="Several bot processes serve this bot on one database "
        "(webhook behind a load balancer): keep each user's updates "
        "in order across them (adds CLIPCHAT_REORDER_WAIT_S per update).",
    )
    reorder_wait_s: float = Field(
        0.3,
        ge=0,
        le=30,
        description="With shared ordering: how long an update waits for an "
        "earlier one still on its way to another process.",
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Serve Prometheus metrics at http://ADDRESS:PORT/metrics "
        "(deploy/README.md: scrape config, Grafana dashboard); "
        "default: off.",
    )
    metrics_address: str = Field(
        "127.0.0.1",
        description="Address the metrics server listens on (0.0.0.0: "
        "every interface, e.g. for a Prometheus container).",
    )
    state_dir_path: Path | None = Field(
        None,
        validation_alias=AliasChoices("CLIPCHAT_STATE_DIR"),
        description="Where the bot keeps its heartbeat file, which `clipchat doctor --alive` (the container "
        "health check) reads; default: the user state dir.",
    )

    answer_url: str | None = Field(
        None,
        description="An OpenAI-compatible model server that answers open questions instead of the in-process answer "
        "model, e.g. http://localhost:11434/v1 (Ollama), http://localhost:8000/v1 (vLLM), http://localhost:8080/v1 "
        "(llama.cpp), https://openrouter.ai/api/v1. CLIP still routes every question and checks every answer; the "
        "photo's caption, tags, the question and recent turns go to that server (docs/operating.md).",
    )
    answer_api_key: SecretStr | None = Field(
        None, description="The answer server's API key, if it wants one (hosted APIs do; local servers mostly not)."
    )
    answer_api_key_file: Path | None = Field(
        None, description="A file holding the answer server's API key instead (kept out of the environment)."
    )
    answer_server_model: str | None = Field(
        None,
        description="With CLIPCHAT_ANSWER_URL: the model's name at that server (`clipchat doctor --online` checks "
        "that the server lists it).",
    )
    answer_sees_images: bool = Field(
        False,
        description="The answer server's model reads images: each question about a photo sends it too, downscaled "
        "to 512 px, as a JPEG data URL (no photo is kept on disk: one no longer in memory is downloaded again from "
        "Telegram by its file id).",
    )
    answer_photo_cache_mb: int = Field(
        32,
        ge=0,
        le=4096,
        description="With CLIPCHAT_ANSWER_SEES_IMAGES: memory for photos under discussion, downscaled (some 10-60 KB "
        "each), so that follow-ups do not download them again; the least recently asked about go first, and "
        "/forget empties its person's. 0: every question downloads its photo.",
    )
    answer_photo_wait_s: float = Field(
        10,
        ge=1,
        le=120,
        description="With CLIPCHAT_ANSWER_SEES_IMAGES: the longest a question waits for its photo's download; past "
        "it, or when Telegram no longer has the file, the question is answered from the words alone.",
    )
    answer_deadline_s: float = Field(
        30, ge=1, le=600, description="Longest one open question may take at the answer server, retries included."
    )
    answer_concurrency: int = Field(
        8,
        ge=1,
        le=1024,
        description="Calls to the answer server at once, all chats together; more wait, within their deadline.",
    )
    answer_candidates: int = Field(
        1,
        ge=1,
        le=8,
        description="Replies asked of the answer server per open question (one call each); CLIP keeps the best it "
        "finds no contradiction in. More answer better, at that many times the server's work (or bill).",
    )
    answer_cooldown_s: float = Field(
        30,
        ge=1,
        le=3600,
        description="After 5 open questions in a row the answer server did not answer, it is not asked for this "
        "long (open questions get the fallback at once); then one question tries it again.",
    )
    answer_fallback: AnswerFallback = Field(
        AnswerFallback.DESCRIBE,
        description="While the answer server cannot answer: describe (one line saying so, then the photo's caption "
        "and tags) or local (the in-process answer model, loaded on the first fallback).",
    )

    @field_validator("allowed_users", "allowed_chats", "admin_ids", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str | int):  # "1,2,3" from the environment, or one id
            return [int(part) for part in str(value).replace(" ", ",").split(",") if part]
        return value

    def bot_token(self) -> str:
        """The token, checked; raises TokenProblem with the @BotFather steps when it is missing or malformed."""
        if self.token is not None:
            token, source = self.token.get_secret_value().strip(), "TELEGRAM_BOT_TOKEN"
        elif self.token_file is not None:
            try:
                token, source = self.token_file.read_text().strip(), str(self.token_file)
            except OSError as error:
                raise TokenProblem(
                    f"Could not read the bot token file {self.token_file}: {error.strerror}. " + BOTFATHER_HINT
                ) from error
        else:
            raise TokenProblem("No bot token found. " + BOTFATHER_HINT)
        if not TOKEN_PATTERN.match(token):
            # Never echo the value: a half-pasted token is still a secret.
            raise TokenProblem(
                f"The bot token in {source} does not look like one from @BotFather "
                f"(digits, a colon, then 30+ letters). " + BOTFATHER_HINT
            )
        return token

    def answer_server(self) -> AnswerServer | None:
        """The model server for open questions, or None (the in-process answer model); InvalidConfig, in one line,
        for settings that cannot work together."""
        from ..engine.served import AnswerServer

        others = {
            "CLIPCHAT_ANSWER_API_KEY": self.answer_api_key is not None,
            "CLIPCHAT_ANSWER_API_KEY_FILE": self.answer_api_key_file is not None,
            "CLIPCHAT_ANSWER_SERVER_MODEL": self.answer_server_model is not None,
            "CLIPCHAT_ANSWER_SEES_IMAGES": self.answer_sees_images,
        }
        if not self.answer_url:
            if given := [name for name, set_ in others.items() if set_]:
                raise InvalidConfig(
                    f"{', '.join(given)} set without CLIPCHAT_ANSWER_URL: set the model server's URL "
                    "(e.g. http://localhost:11434/v1), or unset them"
                )
            return None
        if not re.match(r"^https?://[^/\s]+", self.answer_url):
            raise InvalidConfig(
                f"CLIPCHAT_ANSWER_URL must be an http:// or https:// URL, like http://localhost:11434/v1; "
                f"got one starting {self.answer_url[:8]!r}"
            )
        if not self.answer_server_model:
            raise InvalidConfig(
                "CLIPCHAT_ANSWER_URL needs CLIPCHAT_ANSWER_SERVER_MODEL, the model's name at that server "
                "(`clipchat doctor --online` lists the names it serves)"
            )
        if self.answer_api_key is not None and self.answer_api_key_file is not None:
            raise InvalidConfig("set CLIPCHAT_ANSWER_API_KEY or CLIPCHAT_ANSWER_API_KEY_FILE, not both")
        key = self.answer_api_key
        if self.answer_api_key_file is not None:
            try:
                key = SecretStr(self.answer_api_key_file.read_text().strip())
            except OSError as error:
                raise InvalidConfig(
                    f"could not read CLIPCHAT_ANSWER_API_KEY_FILE {self.answer_api_key_file}: {error.strerror}"
                ) from error
        return AnswerServer(
            url=self.answer_url.rstrip("/"),
            model=self.answer_server_model,
            key=key,
            sees_images=self.answer_sees_images,
            deadline_s=self.answer_deadline_s,
            concurrency=self.answer_concurrency,
            candidates=self.answer_candidates,
            cooldown_s=self.answer_cooldown_s,
            fallback=self.answer_fallback,
        )

    def state_dir(self) -> Path:
        import platformdirs

        return self.state_dir_path or Path(platformdirs.user_state_dir("clipchat"))

    def heartbeat_path(self) -> Path:
        """The file the running bot touches every `heartbeat_s` seconds and `clipchat doctor --alive` reads."""
        return self.state_dir() / "heartbeat"

    def allows(self, user_id: int | None, chat_id: int | None) -> bool:
        """Whether the allow-lists let this user in this chat be served (no lists: everyone)."""
        if user_id is not None and user_id in self.admin_ids:
            return True
        if not self.allowed_users and not self.allowed_chats:
            return True
        return (user_id is not None and user_id in self.allowed_users) or (
            chat_id is not None and chat_id in self.allowed_chats
        )
