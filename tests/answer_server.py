"""A real OpenAI-compatible answer server for the tests, and a proxy in front of it that plays its faults.

    server = TransformersServe(world_dir / "chat").start()      # `transformers serve` on a free loopback port
    proxy = await FaultProxy(server.url).start()                 # the bot talks to proxy.url
    proxy.fail(10, 429); proxy.delay_s = 3; proxy.cut_streams(1)

No mock: every answer the tests get was written by the world's chat model in `transformers serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import ClientError, ClientSession, ClientTimeout, web


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TransformersServe:
    """`transformers serve MODEL` on 127.0.0.1, pinned to the model, on the CPU; `stop` kills it."""

    def __init__(self, model: Path, port: int | None = None) -> None:
        self.model, self.port = str(model), port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"transformers-serve-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> TransformersServe:
        command = [sys.executable, "-m", "transformers.cli.transformers", "serve", self.model]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu", "--log-level", "warning"]
        # One thread: the bot's own models share this machine's cores with it
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        with self.log.open("wb") as log:
            # Its own process group: the server runs the model in a child process, which must end with it
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"transformers serve exited ({self.process.returncode}): {self.log.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"transformers serve gave no /health within {timeout:g} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """Stopped as a service manager stops it; whatever of its group is left, killed."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):  # then killed, below
                self.process.wait(10)
        self.kill()

    def kill(self) -> None:
        """Dies at once, the model's process with it, as a crashed server does: no goodbye to its connections."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


@dataclass
class Seen:
    path: str
    authorization: str | None
    body: dict = field(default_factory=dict)


class FaultProxy:
    """Passes every request to `upstream`, unless told to answer the next ones with an error (`fail`), to wait
    first (`delay_s`), to cut streamed answers after a few events as a dying server would (`cut_streams`), or
    `port` is taken by nothing yet (`start` later, as a server coming back)."""

    def __init__(self, upstream: str, port: int | None = None) -> None:
        self.upstream, self.port = upstream, port or free_port()
        self.seen: list[Seen] = []
        self.delay_s = 0.0
        self._failures: list[int] = []
        self._cuts = 0
        self.cut = 0  # streams cut so far
        self.when_cut: Callable[[], None] | None = None  # e.g. kill the server itself, mid-stream
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def fail(self, times: int, status: int) -> None:
        self._failures += [status] * times

    def cut_streams(self, times: int = 1) -> None:
        self._cuts += times

    @property
    def questions(self) -> list[Seen]:
        return [seen for seen in self.seen if seen.path.endswith("/chat/completions")]

    async def start(self) -> FaultProxy:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._session = ClientSession(timeout=ClientTimeout(total=120))
        return self

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._session = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        data = await request.read()
        with contextlib.suppress(ValueError):
            self.seen.append(Seen(request.path, request.headers.get("Authorization"), json.loads(data or b"{}")))
        if self._failures:
            status = self._failures.pop(0)
            error = {"error": {"message": f"injected {status}", "type": "injected", "code": status}}
            return web.json_response(error, status=status, headers={"Retry-After": "0"})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        try:
            return await self._forward(request, data)
        except ClientError as error:  # the server is gone: what a proxy in front of it answers
            return web.json_response({"error": {"message": f"upstream: {type(error).__name__}"}}, status=502)

    async def _forward(self, request: web.Request, data: bytes) -> web.StreamResponse:
        assert self._session is not None
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=data, headers=headers
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status,
                headers={"Content-Type": upstream.headers.get("Content-Type", "application/json")},
            )
            await response.prepare(request)
            cutting = self._cuts > 0 and "text/event-stream" in upstream.headers.get("Content-Type", "")
            if cutting:
                self._cuts -= 1
            pending, events = b"", 0
            async for chunk in upstream.content.iter_any():
                if not cutting:
                    await response.write(chunk)
                    continue
                pending += chunk
                while b"\n\n" in pending:
                    event, pending = pending.split(b"\n\n", 1)
                    await response.write(event + b"\n\n")
                    events += 1
                    if events == 3:  # the role, then two deltas: the drafts have begun, then the server dies
                        self.cut += 1
                        if self.when_cut is not None:
                            self.when_cut()
                        assert request.transport is not None
                        request.transport.abort()
                        return response
            await response.write_eof()
            return response
