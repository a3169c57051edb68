"""Prometheus metrics: the real bot serves /metrics over HTTP while the fake Bot API drives photos and questions
through it, and the Grafana dashboard asks only for metrics the endpoint exports.

The metrics live in one registry per process (clipchat/metrics.py says why), so other tests' bots add to the
same counters: these tests compare a scrape with the registry as it was before the bot started.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from clipchat.metrics import REGISTRY, STAGES
from tests.bot_helpers import eventually, send_photo, send_text
from tests.fake_telegram import private, user

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana-dashboard.json"
METRIC_NAME = re.compile(r"\b(?:clipchat|process)_[a-z_]+")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, keyed by its name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
        return response.read().decode()


class Moved:
    """How far each sample moved between two expositions."""

    def __init__(self, before: dict, after: dict) -> None:
        self.before, self.after = before, after

    def __call__(self, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return self.after.get(key, 0.0) - self.before.get(key, 0.0)

    def now(self, name: str, **labels: str) -> float | None:
        return self.after.get((name, frozenset(labels.items())))


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


async def test_the_metrics_endpoint_shows_what_the_bot_did(start_bot, telegram, bot_settings, understood):
    port = free_port()
    before = parse(generate_latest(REGISTRY).decode())
    await start_bot(bot_settings.model_copy(update={"metrics_port": port}))
    chat, alice = private(7700), user(7700)
    telegram.fail("sendMessage", retry_after=1)  # flood control on the first reply: the rate limiter waits it out
    send_photo(telegram, chat, alice, understood[0].image)
    await telegram.wait_replies(7700, 1)
    send_text(telegram, chat, alice, f"what colour is the {understood[0].scene.shape}?")
    await telegram.wait_replies(7700, 2)
    send_photo(telegram, chat, alice, b"GIF89a but not really an image")  # fails decoding: BadImage
    await telegram.wait_replies(7700, 3)

    async def moved() -> Moved | None:
        seen = Moved(before, parse(await asyncio.to_thread(scrape, port)))
        return seen if seen("clipchat_replies_total", kind="error") >= 1 else None

    seen = await eventually(moved, what="the error reply counted at /metrics", timeout=10)
    assert seen("clipchat_updates_total", kind="photo") == 2 and seen("clipchat_updates_total", kind="text") == 1
    assert seen("clipchat_replies_total", kind="text") == 2 and seen("clipchat_replies_total", kind="error") == 1
    assert seen("clipchat_errors_total", error="BadImage") == 1
    for stage in STAGES:
        assert seen("clipchat_stage_seconds_count", stage=stage) > 0, f"no {stage} timed"
        assert seen("clipchat_stage_seconds_sum", stage=stage) > 0, f"{stage} took no time"
    assert seen("clipchat_stage_seconds_count", stage="download") == 2  # the bad file was downloaded too
    assert seen("clipchat_batch_size_count", operation="describe") >= 1
    assert seen("clipchat_batch_size_sum", operation="describe") == 1  # the good photo; the bad one never got there
    assert seen("clipchat_model_busy_seconds_total", operation="describe") > 0
    assert seen("clipchat_model_busy_seconds_total", operation="answer") > 0
    assert seen("clipchat_send_wait_seconds_sum") >= 1.0  # the 429's retry_after, spent in the limiter
    for queue, labels in (
        ("clipchat_model_queue_depth", {"operation": "describe"}),
        ("clipchat_decode_queue_depth", {}),
        ("clipchat_update_queue_depth", {}),
    ):
        assert seen.now(queue, **labels) == 0, f"{queue} did not drain"
    assert seen.now("process_resident_memory_bytes") > 0

    exported = {name for name, _ in seen.after}
    asked = {name for query in dashboard_queries() for name in METRIC_NAME.findall(query)}
    assert asked and asked <= exported, f"the dashboard asks for metrics nobody exports: {asked - exported}"


async def test_the_metrics_server_stops_and_a_port_in_use_is_one_line_for_the_operator() -> None:
    from bot.adapter.monitoring import MetricsPortUnavailable, MetricsServer

    port = free_port()
    server = MetricsServer("127.0.0.1", port)
    server.start()
    assert "clipchat_updates_dropped_total" in await asyncio.to_thread(scrape, port)
    with pytest.raises(MetricsPortUnavailable) as refused:
        MetricsServer("127.0.0.1", port).start()
    assert "\n" not in refused.value.detail and f"127.0.0.1:{port}" in refused.value.detail
    assert "CLIPCHAT_METRICS_PORT" in refused.value.detail
    await server.stop()
    with pytest.raises(OSError):  # nothing listens there any more
        await asyncio.to_thread(scrape, port)
    MetricsServer("127.0.0.1", None).start()  # metrics off: nothing to start


def test_the_dashboard_has_its_panels_and_a_datasource_to_choose() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    titles = " | ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("photos", "replies", "p50", "p95", "batch size", "queue", "errors", "utilisation", "rate-limiter"):
        assert topic in titles, f"no panel about {topic}"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(target["datasource"]["uid"] == "${datasource}" for target in panel["targets"]), panel["title"]
