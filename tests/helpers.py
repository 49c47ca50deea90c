"""Test helpers that make real files and serve real HTTP."""
from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont


def label_image(text: str, size=(480, 240)) -> bytes:
    """A JPEG with each line of ``text`` printed large (OCR may drop the spaces inside a line)."""
    img = Image.new("RGB", size, (245, 240, 230))
    d = ImageDraw.Draw(img)
    for i, line in enumerate(text.split("\n")):
        d.text((30, 40 + 70 * i), line, fill=(20, 20, 20), font=ImageFont.load_default(size=44))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A real, valid PNG of width x height 1-bit pixels: ~110 MB decoded, ~100 KB on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    comp = zlib.compressobj(9)
    parts = [comp.compress(row) for _ in range(height)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


class _Handler(BaseHTTPRequestHandler):
    routes: dict = {}

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        route = self.routes.get(self.path)
        if route is None:
            self.send_response(404)
            self.end_headers()
            return
        route(self)


class LocalHTTPServer:
    """A real HTTP server on 127.0.0.1 (a free port), served from a thread for the length of a with block."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class ImageServer(LocalHTTPServer):
    """A real HTTP server on 127.0.0.1 with routes for good, big, slow and redirecting images."""

    def __init__(self, image: bytes):
        self.image = image
        routes = {
            "/ok.jpg": self._ok,
            "/big-declared": self._big_declared,
            "/big-streamed": self._big_streamed,
            "/slow": self._slow,
            "/redirect": self._redirect,
            "/redirect-ftp": self._redirect_ftp,
            "/not-image": self._not_image,
        }
        super().__init__(type("Handler", (_Handler,), {"routes": routes}))

    @property
    def base(self) -> str:
        return self.root_url

    def _ok(self, h):
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", str(len(self.image)))
        h.end_headers()
        h.wfile.write(self.image)

    def _big_declared(self, h):
        h.send_response(200)
        h.send_header("Content-Length", str(500 * 1024 * 1024))
        h.end_headers()

    def _big_streamed(self, h):
        h.send_response(200)
        h.end_headers()  # no length: HTTP/1.0 style, read until close
        try:
            for _ in range(200):
                h.wfile.write(b"\x00" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _slow(self, h):
        h.send_response(200)
        h.send_header("Content-Length", "1000000")
        h.end_headers()
        try:
            for _ in range(100):
                h.wfile.write(b"\x00" * 100)
                h.wfile.flush()
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _redirect(self, h):
        h.send_response(302)
        h.send_header("Location", "/ok.jpg")
        h.end_headers()

    def _redirect_ftp(self, h):
        h.send_response(302)
        h.send_header("Location", "ftp://example.com/x.jpg")
        h.end_headers()

    def _not_image(self, h):
        body = b"<html>not an image</html>"
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def lora_run(model_dir, config, examples, out, stop_after: int | None = None):
    """Train LoRA on a tiny checkpoint as the train job does; ``stop_after`` steps, the run is stopped as a
    kill or a cancel stops it (``StopTraining`` between steps, after a checkpoint). (result, adapter)."""
    from trainer.loop import StopTraining, train
    from trainer.lora import apply_lora, load_for_training

    adapter = load_for_training(model_dir, config)
    apply_lora(adapter, config.lora, seed=config.seed)
    calls = []

    def should_stop():
        calls.append(1)
        if stop_after is not None and len(calls) > stop_after:
            raise StopTraining("killed")

    return train(adapter, examples(adapter), config, out, should_stop=should_stop), adapter


def until(check, *, timeout: float = 60, every: float = 0.2, what: str = "the condition"):
    """Call ``check`` until it returns something truthy, and return that; fail after ``timeout`` seconds.
    For waits on another process (a server, a worker, a browser tab) where no event says it is done."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout:g} s (last: {got!r})")
        time.sleep(every)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """`vitpro ui`'s server (ui/server.py: st.App with the sign-in routes and the gate) in a process of its
    own on ``port``, its output in ``log``; ``start()`` returns once /_stcore/health answers."""

    def __init__(self, log: Path, *, port: int | None = None, env: dict | None = None) -> None:
        self.port, self.log, self.env = port or free_port(), log, env or {}
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> str:
        import os
        import subprocess
        import urllib.request

        from vitpro.commands.app import streamlit_command

        repo = Path(__file__).resolve().parent.parent
        self.proc = subprocess.Popen(streamlit_command(self.port, "127.0.0.1"), cwd=repo,
                                     env={**os.environ, "PYTHONPATH": str(repo), **self.env},
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2).read() == b"ok":
                    return self.url
            except OSError:
                time.sleep(0.3)
        self.proc.kill()
        raise AssertionError(self.log.read_text())

    def stop(self) -> int | None:
        """Stop it; returns the exit code it had before being asked to (None: it was still running)."""
        import subprocess

        died = self.proc.poll()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return died


def excluded_ids(lake, version=None) -> set[str]:
    """The samples excluded at a store version (the current one by default), read as the filters read them."""
    from db.lake.exclusions import excluded_sql

    return {r[0] for r in lake.fetchall(f"SELECT sample_id FROM ({excluded_sql(lake, version)})")}
