"""A real browser for the viewer's tests: Debian's chromium (headless, WebGL through SwiftShader) driven
by Playwright's Python package. Nothing is downloaded: the executable is the system package (`.ci/run`
installs it with apt)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1000, "height": 700}
CANVAS_BOX = (0, 150, 640, 680)  # left, top, right, bottom: the 3D view clear of the GUI panel and notices


def have_chromium() -> bool:
    return os.path.exists(CHROMIUM)


@contextlib.contextmanager
def chromium_page() -> Iterator[object]:
    """A fresh headless chromium (its own user-data-dir) with one page."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="viewer-chromium-")
    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
                                                        viewport=VIEWPORT)
            try:
                yield ctx.new_page()
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@contextlib.contextmanager
def pipeline_view(*args: str, timeout: float = 120) -> Iterator[str]:
    """`pipeline view ARGS --port 0` in its own process; yields the URL it prints, stops it at the end."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "view", *args, "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    url: list[str] = []

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            m = re.search(r"viewer ready in .*?(http://\S+)", line)
            if m and not url:
                url.append(m.group(1))

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    try:
        while not url:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("pipeline view did not start:\n" + "".join(lines)[-3000:])
            time.sleep(0.1)
        yield url[0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def canvas(page, path: Path | None = None) -> np.ndarray:
    """The 3D view's pixels [H, W, 3] (a screenshot, cropped to CANVAS_BOX)."""
    import io

    from PIL import Image

    png = page.screenshot(path=str(path) if path else None)
    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGB").crop(CANVAS_BOX)).astype(np.int16)


def wait_for(page, check, timeout: float = 60.0, what: str = "the picture") -> np.ndarray:
    """Screenshots until check(pixels) holds; the last pixels (AssertionError after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        px = canvas(page)
        if check(px):
            return px
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not shown within {timeout:.0f} s (std {px.std():.1f})")
        time.sleep(0.5)


def orange_pixels(px: np.ndarray) -> int:
    """Pixels of the frustums' colour (230, 80, 40), give or take shading and antialiasing."""
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    return int(((r > 170) & (g < 140) & (b < 110) & (r - g > 80)).sum())


def open_viewer(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("canvas", timeout=60_000)


def time_slider(page):
    """The thumb of the 'time' slider (the first slider of the GUI panel)."""
    thumb = page.locator("[role=slider]").first
    thumb.wait_for(timeout=30_000)
    return thumb
