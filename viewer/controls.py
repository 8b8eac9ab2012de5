"""GUI pieces of the viewer that know nothing of datasets: the time controls (slider, play/pause,
frames per second; a player thread that advances the slider) and markdown escaping of shown text."""

from __future__ import annotations

import threading
from typing import Any


def md_escape(text: str) -> str:
    """Text shown inside the GUI's markdown, with markdown's active characters escaped."""
    return "".join("\\" + c if c in "\\`*_[]<>|" else c for c in str(text))


class TimeControls:
    """The time slider, play/pause and fps; `on_time(t)` is called for every new time."""

    def __init__(self, gui: Any, on_time: Any):
        self.on_time = on_time
        with gui.add_folder("Time"):
            self.slider = gui.add_slider("time", min=0, max=1, step=1, initial_value=0, disabled=True)
            self.play = gui.add_button("play", disabled=True)
            self.fps = gui.add_slider("frames per second", min=1, max=12, step=1, initial_value=4)
            self.label = gui.add_markdown("")
        self.playing = False
        self.stopped = threading.Event()
        self.slider.on_update(lambda _: self.on_time(int(self.slider.value)))
        self.play.on_click(lambda _: self.toggle())
        self.times: list[float] = []
        threading.Thread(target=self._loop, daemon=True, name="viewer-play").start()

    def set_times(self, times: list[float]) -> None:
        """A new clip: its normalised times; the slider goes back to 0 (and draws it)."""
        self.times = list(times) or [0.0]
        n = len(self.times)
        self.slider.max = max(1, n - 1)
        self.slider.disabled = n < 2
        self.play.disabled = n < 2
        if self.slider.value != 0:
            self.slider.value = 0  # draws through the callback
        else:
            self.on_time(0)

    def toggle(self) -> None:
        self.playing = not self.playing
        self.play.label = "pause" if self.playing else "play"

    def _loop(self) -> None:
        while not self.stopped.wait(1.0 / max(1, int(self.fps.value))):
            if self.playing and len(self.times) > 1:
                self.slider.value = (int(self.slider.value) + 1) % len(self.times)
