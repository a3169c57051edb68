"""Configuration: the token's sources and checks, allow-lists from the environment."""

from __future__ import annotations

import pytest

from bot.core.settings import BotSettings, TokenProblem

GOOD = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def test_the_token_comes_from_the_environment_or_a_file(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", GOOD)
    assert BotSettings().bot_token() == GOOD
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN")
    secret = tmp_path / "token"
    secret.write_text(GOOD + "\n")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN_FILE", str(secret))
    assert BotSettings().bot_token() == GOOD
    assert GOOD not in repr(BotSettings())


def test_a_missing_or_malformed_token_explains_how_to_get_one(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    with pytest.raises(TokenProblem, match="@BotFather"):
        BotSettings().bot_token()
    with pytest.raises(TokenProblem, match="does not look like") as error:
        BotSettings(token="12345:short-secret-value").bot_token()
    assert "short-secret-value" not in str(error.value)
    with pytest.raises(TokenProblem, match="Could not read"):
        BotSettings(token_file=tmp_path / "missing").bot_token()


def test_allow_lists_and_admins_come_from_comma_separated_ids(monkeypatch) -> None:
    monkeypatch.setenv("CLIPCHAT_ALLOWED_USERS", "1, 2")
    monkeypatch.setenv("CLIPCHAT_ALLOWED_CHATS", "-100")
    monkeypatch.setenv("CLIPCHAT_ADMIN_IDS", "9")
    settings = BotSettings()
    assert settings.allowed_users == [1, 2] and settings.admin_ids == [9]
    assert settings.allows(1, 1) and settings.allows(3, -100) and settings.allows(9, 5)
    assert not settings.allows(3, 3) and not settings.allows(None, 7)
    assert BotSettings(allowed_users=[], allowed_chats=[]).allows(3, 3)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CLIPCHAT_RETENTION_DAYS", "0"),  # would purge every turn and photo record at the next run
        ("CLIPCHAT_RETENTION_DAYS", "-1"),
        ("CLIPCHAT_WEBHOOK_PORT", "70000"),
        ("CLIPCHAT_MAX_WAIT_MS", "-5"),
        ("CLIPCHAT_USER_QUEUE", "0"),
        ("CLIPCHAT_MAX_LABELS", "100000"),
        ("CLIPCHAT_SEND_RETRIES", "1000"),
        ("CLIPCHAT_MAX_IMAGE_PIXELS", "0"),
    ],
)
def test_settings_out_of_bounds_are_refused_with_the_setting_named(monkeypatch, variable, value) -> None:
    from pydantic import ValidationError

    from storage import StorageSettings
    from vision.catalog.settings import VisionSettings

    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", GOOD)
    monkeypatch.setenv(variable, value)
    field = variable.removeprefix("CLIPCHAT_").lower()
    owner = next(cls for cls in (BotSettings, StorageSettings, VisionSettings) if field in cls.model_fields)
    with pytest.raises(ValidationError, match=field):
        owner(_env_file=None)
