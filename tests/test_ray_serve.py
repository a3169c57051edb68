"""Vision on Ray Serve, as deploy/README.md runs it: `ray start --head` with token authentication,
`clipchat vision-server` deploying the world's models onto it, and the real bot answering through it."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bot_helpers import jpeg, send_photo, send_text
from tests.fake_telegram import private, user
from tests.test_bot_cli import command


@dataclass
class Head:
    address: str  # the GCS, what `ray start --address` and `clipchat vision-server --address` take
    token_path: Path  # the cluster's token: every process that joins reads it from this file
    token: str  # only for checking that it never shows up in a log
    process: subprocess.Popen

    def auth_env(self) -> dict[str, str]:
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}

    def stop(self) -> None:
        """Stop this head only (`ray stop` would end every Ray on the machine, a developer's own too):
        `ray start --block` takes its node's processes down with it on SIGTERM."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def without_settings(environment: dict[str, str]) -> dict[str, str]:
    """The test's environment less anything that would point a child at another cluster, bot or token."""
    return {
        key: value
        for key, value in environment.items()
        if not key.startswith(("CLIPCHAT_", "TELEGRAM_", "DATABASE_", "RAY_"))
    }


def wait_for_text(path: Path, text: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode} before {text!r}:\n{path.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {text!r} within {timeout:g} s:\n{path.read_text(errors='replace')}")
        time.sleep(0.5)


@contextlib.contextmanager
def ray_head():
    """`ray start --head` with token authentication on and the token in a file of its own.

    Ray refuses a loopback node address and binds the GCS to every interface, so the token is
    what keeps other machines out. A short temporary directory: Ray's sockets live under it.
    """
    directory = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    token_path = directory / "auth_token"
    token = secrets.token_hex(32)
    token_path.touch(mode=0o600)
    token_path.write_text(token)
    port, client_port = free_port(), free_port()
    log_path = directory / "head.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            # `ray start`, from the Ray this Python imports
            [
                sys.executable,
                "-m",
                "ray.scripts.scripts",
                "start",
                "--head",
                "--block",
                f"--port={port}",
                f"--ray-client-server-port={client_port}",
                "--include-dashboard=false",
                "--disable-usage-stats",
                "--num-cpus=2",
                f"--temp-dir={directory}",
            ],
            env={
                **without_settings(os.environ),
                "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(token_path),
                "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
            },  # nothing to drain at teardown
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    head = Head(f"127.0.0.1:{port}", token_path, token, process)
    try:
        wait_for_text(log_path, "Ray runtime started", process, timeout=120)
        yield head
    finally:
        head.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def vision_server_process(head: Head, world_dir: Path, tmp_path: Path, stop_timeout: float = 30):
    """`clipchat vision-server --address HEAD` as an operator starts it, the token passed by path only.

    Left running, it is stopped on leaving as `docker compose stop` stops it, with SIGTERM, and
    must remove its application from the cluster and exit cleanly.
    """
    log_path = tmp_path / "vision-server.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [
                *command(),
                "vision-server",
                "--address",
                head.address,
                "--models",
                str(world_dir),
                "--cpus-per-replica",
                "1",
                "--stop-timeout",
                str(stop_timeout),
            ],
            env={
                **without_settings(os.environ),
                **head.auth_env(),
                "HF_HUB_OFFLINE": "1",
                "CLIPCHAT_DEVICE": "cpu",
                "CLIPCHAT_CACHE_DIR": str(tmp_path / "cache"),
                "CLIPCHAT_MAX_BATCH": "8",
            },
            cwd=tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_text(log_path, "clipchat-vision is serving", process, timeout=240)
        yield process, log_path
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(stop_timeout + 30)
            output = log_path.read_text(errors="replace")
            assert returncode == 0 and "removed clipchat-vision from the Ray cluster" in output, output
            assert "Traceback" not in output and head.token not in output
    finally:
        if process.poll() is None:  # the test failed: do not leave it behind
            process.kill()
            process.wait()


@contextlib.contextmanager
def ray_token_for_this_process(head: Head):
    """Let this test process join `head` as the bot does: RAY_AUTH_MODE and RAY_AUTH_TOKEN_PATH in its
    environment. Ray reads them when it is imported; if it already was, it is told to read them again."""
    saved = {key: os.environ.get(key) for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN")}

    def reread() -> None:
        if "ray" in sys.modules:
            from ray._raylet import AuthenticationTokenLoader, Config

            Config.initialize("")
            AuthenticationTokenLoader.instance().reset_cache()

    os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ.update(head.auth_env())
    reread()
    try:
        yield
    finally:
        import ray

        ray.shutdown()  # before the head goes: a driver left connected waits on it
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reread()


@pytest.fixture(scope="module")
def cluster(world_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A token-authenticated head serving the world's models, and this process holding its token."""
    with (
        ray_head() as head,
        vision_server_process(head, world_dir, tmp_path_factory.mktemp("vision")) as (server, log_path),
        ray_token_for_this_process(head),
    ):
        yield head, server, log_path


async def test_the_bot_answers_through_ray_serve(
    cluster, start_bot, bot_settings, telegram, world_models, understood, caplog
):
    from vision import load_image

    head, _, server_log = cluster
    app = await start_bot(bot_settings.model_copy(update={"inference": "ray", "ray_address": head.address}))
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
    assert head.token not in caplog.text and head.token not in server_log.read_text(errors="replace")


def test_a_process_without_the_token_is_refused_and_told_what_to_set(cluster, world_dir: Path, tmp_path: Path) -> None:
    """What deploy/README.md's commands ran into before: joining an authenticated head without the token."""
    head, _, _ = cluster
    # Ray tries the head once a second, 20 times by default, before it gives up: 3 tries see the same refusal
    quick = {"RAY_NUM_REDIS_GET_RETRIES": "3"}
    refused = subprocess.run(
        [*command(), "vision-server", "--address", head.address, "--models", str(world_dir)],
        env={**without_settings(os.environ), "HF_HUB_OFFLINE": "1", "CLIPCHAT_DEVICE": "cpu", **quick},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"clipchat: could not join the Ray cluster at {head.address}" in refused.stderr
    assert "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_ctrl_c_stops_the_vision_server_after_the_cluster_stopped(world_dir: Path, tmp_path: Path) -> None:
    """An operator runs `ray stop`, then presses Ctrl-C: the server gives up on removing its application
    after --stop-timeout and exits, instead of waiting on a cluster that is gone. (Stopping it while
    the cluster runs, with SIGTERM, is checked on leaving `vision_server_process`.)"""
    with ray_head() as head, vision_server_process(head, world_dir, tmp_path, stop_timeout=3) as (server, log_path):
        head.stop()
        server.send_signal(signal.SIGINT)
        try:
            returncode = server.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"Ctrl-C did not stop `clipchat vision-server` in 30 s:\n{log_path.read_text()}")
    output = log_path.read_text(errors="replace")
    assert returncode == 0, output
    assert "SIGINT: removing clipchat-vision from the cluster" in output
    assert "could not remove clipchat-vision from the Ray cluster" in output
    assert "Traceback" not in output and head.token not in output


def test_the_driver_sends_the_photo_when_the_replicas_answer_model_sees_images(world_dir, tmp_path) -> None:
    """On Ray the driver loads no model: whether questions bring the photo is read from the set's config."""
    from bot.engine.ray_serve import replicas_see_images
    from tests.tiny_vlms import tiny_smolvlm
    from vision.catalog.settings import VisionSettings

    vlm = tiny_smolvlm(tmp_path / "smolvlm")
    assert replicas_see_images(VisionSettings(models=str(world_dir), answer_model=f"local-dir:{vlm}"))
    assert not replicas_see_images(VisionSettings(models=str(world_dir)))  # the world's chat model reads words
    gone = VisionSettings(models=str(world_dir), answer_model=f"local-dir:{tmp_path / 'missing'}")
    assert not replicas_see_images(gone)  # not found here: words, said in the log, not a failed start
