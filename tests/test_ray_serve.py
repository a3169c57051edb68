"""Vision on Ray Serve: a local Ray instance (CPU) serves the models, the real bot talks to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bot_helpers import jpeg, send_photo, send_text
from tests.fake_telegram import private, user


@pytest.fixture(scope="module")
def vision_server(world_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    import ray
    from ray import serve

    from bot.engine.ray_serve import deploy
    from vision.settings import VisionSettings

    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    vision = VisionSettings(models=str(world_dir), device="cpu", cache_dir=tmp_path_factory.mktemp("ray-cache"))
    deploy(vision, replicas=1, cpus_per_replica=1, max_batch=8)
    yield vision
    serve.shutdown()
    ray.shutdown()


async def test_the_bot_answers_through_ray_serve(vision_server, start_bot, bot_settings, telegram, world_models,
                                                 understood):
    from vision import load_image

    app = await start_bot(bot_settings.model_copy(update={"inference": "ray"}))
    assert type(app.bot_data.services.models).__name__ == "RayModels"
    photos = [h for h in understood if h.scene.colour in ("red", "blue")][:2]
    chat, alice = private(301), user(301)
    file_ids = []
    for number, held in enumerate(photos, 1):
        file_ids.append(send_photo(telegram, chat, alice, held.image)["photo"][-1]["file_id"])
        reply = (await telegram.wait_replies(301, number, timeout=60))[-1]
        expected = world_models.describe([load_image(jpeg(held.image))])[0].caption
        assert expected.lower() in reply.text.lower()  # the replica's models, the same answer
    send_text(telegram, chat, alice, f"what colour is the {photos[1].scene.shape}?")
    answer = (await telegram.wait_replies(301, 3, timeout=60))[-1]
    assert photos[1].scene.colour in answer.text
    send_text(telegram, chat, alice, f"/search {photos[0].scene.caption}")
    [found] = (await telegram.wait_for(lambda: telegram.sent("sendPhoto", 301), timeout=60, what="a search"))[:1]
    assert found.params["photo"] == file_ids[0]
    send_photo(telegram, chat, alice, jpeg(understood[0].image)[:200])  # a broken file: refused in the replica
    refusal = (await telegram.wait_replies(301, 5, timeout=60))[-1]
    assert "damaged" in refusal.text
