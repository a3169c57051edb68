"""Every setting, from the settings classes: `deploy/.env.example` and `docs/settings.md` both come from here.

Each field's description is its documentation; SECTIONS only says which concern each field belongs to, and
in which order the concerns come. `clipchat env-example` prints the .env file, `clipchat env-example
--markdown` the reference page; tests keep both files equal to what these print.
"""

from __future__ import annotations

import re
import textwrap
import typing
from dataclasses import dataclass

import annotated_types
from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from storage import StorageSettings
from vision.catalog.settings import VisionSettings

from ..core.settings import BotSettings
from .logs import LogSettings

SETTINGS: tuple[type[BaseSettings], ...] = (BotSettings, VisionSettings, StorageSettings, LogSettings)
MARKDOWN_COMMAND = "clipchat env-example --markdown > docs/settings.md"
ENV_COMMAND = "clipchat env-example > deploy/.env.example"


@dataclass(frozen=True)
class Section:
    title: str
    settings: type[BaseSettings]
    fields: tuple[str, ...]
    about: str = ""  # one line under the heading in docs/settings.md


SECTIONS = (
    Section("Telegram", BotSettings, ("token", "token_file", "base_url", "base_file_url", "local_mode")),
    Section(
        "Who is served",
        BotSettings,
        ("allowed_users", "allowed_chats", "admin_ids"),
    ),
    Section(
        "Daily budgets",
        BotSettings,
        ("daily_photos_per_user", "daily_questions_per_user", "daily_photos_per_group", "daily_questions_per_group"),
    ),
    Section(
        "Models",
        VisionSettings,
        (
            "models",
            "clip_model",
            "clip_pretrained",
            "language_model",
            "captioner",
            "answer_model",
            "allow_random_weights",
        ),
        "What each built-in set holds, and how to train your own: [models.md](models.md).",
    ),
    Section(
        "Answers from a model server",
        BotSettings,
        (
            "answer_url",
            "answer_api_key",
            "answer_api_key_file",
            "answer_server_model",
            "answer_sees_images",
            "answer_photo_cache_mb",
            "answer_photo_wait_s",
            "answer_deadline_s",
            "answer_concurrency",
            "answer_candidates",
            "answer_cooldown_s",
            "answer_fallback",
        ),
        "Ollama, vLLM, llama.cpp's server or a hosted API, and what leaves the machine: "
        "[operating.md](operating.md#answers-from-a-model-server).",
    ),
    Section("Device and speed", VisionSettings, ("device", "dtype", "speed_paths", "cuda_graphs", "jpeg_on_device")),
    Section("Database", StorageSettings, ("database_url", "database_timeout_s", "retention_days")),
    Section(
        "Webhook",
        BotSettings,
        ("webhook_secret", "webhook_listen", "webhook_port"),
        "For `clipchat run --webhook URL`; without `--webhook` the bot polls Telegram and these do nothing.",
    ),
    Section("Logging", LogSettings, ("log_level", "log_format", "log_content")),
    Section(
        "Queues, batching and time limits",
        BotSettings,
        (
            "user_queue",
            "max_concurrent_updates",
            "vision_queue",
            "max_batch",
            "max_wait_ms",
            "decode_workers",
            "decode_memory_mb",
            "download_memory_mb",
            "model_timeout_s",
            "stuck_exit_s",
            "download_timeout_s",
            "album_wait_s",
        ),
        "How to size them for a machine: [operating.md](operating.md#sizing).",
    ),
    Section(
        "What one request may ask",
        BotSettings,
        ("search_results", "max_labels", "max_label_chars", "max_question_chars"),
    ),
    Section("Photo limits", VisionSettings, ("max_image_bytes", "max_image_pixels")),
    Section(
        "Sending",
        BotSettings,
        ("rate_limit_per_second", "rate_limit_per_group_minute", "send_retries", "draft_every_ms"),
    ),
    Section("Caches", VisionSettings, ("cache_dir", "hub_cache_dir")),
    Section(
        "Running: maintenance, metrics, health",
        BotSettings,
        ("maintenance_hours", "heartbeat_s", "metrics_port", "metrics_address", "state_dir_path"),
        "What the logs and metrics say: [deploy/README.md](../deploy/README.md#what-to-watch-in-production).",
    ),
    Section(
        "Scaling out: Ray and several processes",
        BotSettings,
        ("inference", "ray_address", "shared_ordering", "reorder_wait_s"),
        "How: [deploy/README.md](../deploy/README.md#several-bot-processes-webhook-behind-a-load-balancer) and "
        "[Multi-GPU and multi-node](../deploy/README.md#multi-gpu-and-multi-node-vision-on-ray-serve).",
    ),
)


def unplaced(sections: tuple[Section, ...] = SECTIONS) -> list[str]:
    """What keeps the sections from placing every field once: a field in none or in two, a name that is no field."""
    problems = []
    for settings in dict.fromkeys([*SETTINGS, *(section.settings for section in sections)]):
        cls = settings.__name__
        named = [name for section in sections if section.settings is settings for name in section.fields]
        problems += [f"{cls}.{name} is not in any section" for name in settings.model_fields if name not in named]
        problems += [f"{cls} has no field {name}" for name in named if name not in settings.model_fields]
        problems += [f"{cls}.{name} is in two sections" for name in dict.fromkeys(named) if named.count(name) > 1]
    return problems


def _placed(sections: tuple[Section, ...]) -> tuple[Section, ...]:
    problems = unplaced(sections)
    if problems:
        raise RuntimeError(f"bot/ops/env_example.py's SECTIONS must place every setting once: {'; '.join(problems)}")
    return sections


def _variables(name: str, field: FieldInfo) -> list[str]:
    """The environment variables a setting is read from: its aliases, else CLIPCHAT_<NAME>; the first is the one
    to use."""
    alias = field.validation_alias
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
    names = [choice for choice in choices if isinstance(choice, str)]
    return names or [f"CLIPCHAT_{name.upper()}"]


def every_variable() -> set[str]:
    """Every environment variable the settings classes read, second names (CLIPCHAT_TOKEN, ...) included."""
    return {
        variable for cls in SETTINGS for name, field in cls.model_fields.items() for variable in _variables(name, field)
    }


def env_example(sections: tuple[Section, ...] = SECTIONS) -> str:
    lines = [
        "# clipchat settings: copy to .env (or an EnvironmentFile) and change what you need.",
        "# Generated by `clipchat env-example` from the settings classes; every line shows the default.",
        "# The same as tables, with each setting's range: docs/settings.md (`clipchat env-example --markdown`).",
        "",
    ]
    for section in _placed(sections):
        lines += [f"# --- {section.title} " + "-" * (100 - len(section.title)), ""]
        for name in section.fields:
            field = section.settings.model_fields[name]
            variable = _variables(name, field)[0]
            lines += [
                f"# {line}"
                for line in textwrap.wrap(field.description or "", 98, break_long_words=False, break_on_hyphens=False)
            ]
            lines.append(f"# {variable}={_default(field)}")
            lines.append("")
    return "\n".join(lines)


def settings_markdown(sections: tuple[Section, ...] = SECTIONS) -> str:
    """docs/settings.md: a table per concern, each setting with its default, the values it takes and what it does."""
    sections = _placed(sections)
    lines = [
        "# Settings",
        "",
        f"<!-- Generated by `{MARKDOWN_COMMAND}` from the settings classes: change a field's",
        "description there, then regenerate this file; a test fails while the two differ. -->",
        "",
        "Every setting clipchat reads, with its default. Each is read once, at start, from the environment or from",
        "a `.env` file in the directory clipchat starts in (the environment wins); the compose files read",
        "`deploy/.env`, and [deploy/.env.example](../deploy/.env.example) is a copy to start from, with every",
        "setting commented out at its default. A value outside its range stops clipchat at start. Hugging Face's",
        "own settings (`HF_HOME`, `HF_HUB_OFFLINE`, `HF_TOKEN`, ...) are taken from `.env` as well.",
        "",
        " · ".join(f"[{section.title}](#{_slug(section.title)})" for section in sections),
    ]
    for section in sections:
        module = section.settings.__module__
        lines += ["", f"## {section.title}", ""]
        if section.about:
            lines += [section.about, ""]
        lines += [
            f"From `{section.settings.__name__}` in `{module.replace('.', '/')}.py`.",
            "",
            "| variable | default | values | meaning |",
            "|---|---|---|---|",
        ]
        for name in section.fields:
            field = section.settings.model_fields[name]
            first, *others = _variables(name, field)
            variable = f"`{first}`" + "".join(f" (or `{other}`)" for other in others)
            default = _default(field)
            cells = [variable, f"`{default}`" if default else "—", _values(field), field.description or ""]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _default(field: FieldInfo) -> str:
    value: object
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined or field.default is None:
        return ""
    else:
        value = field.default
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def _values(field: FieldInfo) -> str:
    """What a setting accepts, where its type or bounds say: a choice, true/false, a range of numbers."""
    annotation = field.annotation
    choices = [arg for arg in typing.get_args(annotation) if typing.get_origin(arg) is typing.Literal]
    if typing.get_origin(annotation) is typing.Literal:
        choices = [annotation]
    if choices:
        return ", ".join(str(value) for value in typing.get_args(choices[0]))
    if annotation is bool:
        return "true, false"
    bounds = []
    for bound in field.metadata:
        if isinstance(bound, annotated_types.Ge):
            bounds.append(f"at least {bound.ge}")
        elif isinstance(bound, annotated_types.Gt):
            bounds.append(f"over {bound.gt}")
        elif isinstance(bound, annotated_types.Le):
            bounds.append(f"at most {bound.le}")
        elif isinstance(bound, annotated_types.Lt):
            bounds.append(f"under {bound.lt}")
    if len(bounds) == 2 and bounds[0].startswith("at least") and bounds[1].startswith("at most"):
        return f"{bounds[0].removeprefix('at least ')} to {bounds[1].removeprefix('at most ')}"
    return ", ".join(bounds)
