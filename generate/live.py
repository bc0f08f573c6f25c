"""Live mode's ear: a stream of sound chunks in, the window to draw out, every `interval_s` seconds while sound arrives.

The app's Live tab (app.py) and bench/live.py feed a `LiveListener` the chunks a microphone sends; it keeps the last
two encoder windows of sound and, once `interval_s` seconds of sound have come in since the last picture, hands back
the window to draw:
- the window that starts where the current sound began (0.1 s before its onset, as the `first` window policy hears a
  file), padded with silence after what has been heard so far, so a spoken caption is heard from its first word
  whatever moment the interval falls on; a sound already a little longer than a window (up to SQUEEZE_MAX windows) is
  heard whole, sped up to fit, as the `first` policy hears a file; a longer one through its latest window;
- nothing when the newest stretch is silence (its RMS below `silence_dbfs`): the last picture stays, instead of
  being replaced by what the model draws for a quiet room.
Time is counted in samples received, not on the wall clock: a server slower than real time gets larger chunks and
draws at each of them, and a benchmark or test that replays a file gets the same windows every time.

A `LivePainter` draws those windows off the stream's thread. The stream handler must return at once: Gradio's
streaming event keeps only the newest chunk while its handler runs, so a handler that drew in place lost the
microphone's sound of those moments (measured: 0.9 s and 0.5 s of a 2 s caption arrived). The painter draws one
window at a time on its own thread, the newest each session asked for, and keeps each session's last picture for the
handler to pick up at its next chunk.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from hearing.audio import ONSET_MARGIN_S, SAMPLE_RATE, heard_sped_up, squeeze, to_mono_16k

DEFAULT_INTERVAL_S = 1.0  # a new picture each second of sound (the "every second or so")
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.25, 10.0
# Quieter than this (RMS, dB below full scale) is silence. The shipped spoken examples measure -16 to -40 dBFS over the
# whole clip; a quiet room through a laptop microphone -60 to -70.
SILENCE_DBFS = -55.0
MIN_SILENCE_DBFS, MAX_SILENCE_DBFS = -100.0, 0.0
GAP_S = 0.25  # a pause at least this long between two sounds starts a new one (the gaps between words are shorter)
FRAME = SAMPLE_RATE // 100  # 10 ms frames, as hearing.audio.sound_onset measures loudness


def rms_dbfs(wave: np.ndarray) -> float:
    """The RMS level of a stretch of sound in dB below full scale (-inf for digital silence or no samples)."""
    if wave.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def current_sound(wave: np.ndarray, window: int, silence_dbfs: float = SILENCE_DBFS) -> np.ndarray:
    """The window to hear from the sound heard so far (`wave`, 16 kHz, newest last): from 0.1 s before the onset of the
    current sound (the first loud 10 ms after the last pause of at least GAP_S) when that lies within the last window,
    zero-padded to `window` samples after its end; from there sped up to fit the window at its pitch when it began
    within the last SQUEEZE_MAX windows (a long spoken request keeps its first words); else the last `window` samples."""
    frames = wave[wave.shape[0] % FRAME :].reshape(-1, FRAME)  # aligned to the newest sample
    loud = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1)) >= 10 ** (silence_dbfs / 20)
    offset = wave.shape[0] % FRAME
    start = max(wave.shape[0] - window, 0)
    if loud.any():
        last_loud = int(np.nonzero(loud)[0][-1])
        gap = max(int(round(GAP_S * 100)), 1)
        onset = 0
        quiet_run = 0
        for index in range(last_loud, -1, -1):  # back from the newest sound to the pause before it
            quiet_run = 0 if loud[index] else quiet_run + 1
            if quiet_run >= gap:
                onset = index + quiet_run
                break
        onset_sample = max(offset + onset * FRAME - int(ONSET_MARGIN_S * SAMPLE_RATE), 0)
        if heard_sped_up(wave.shape[0] - onset_sample, window):
            return squeeze(wave[onset_sample:], window)
        start = max(start, onset_sample)
    heard = wave[start : start + window]
    return np.pad(heard, (0, window - heard.shape[0])).astype(np.float32, copy=False)


@dataclass
class LiveListener:
    """One live session's sound: `hear(rate, samples)` each chunk; the window to draw when a picture is due, else None
    (`state` then says why: "waiting" for the interval, or "silence")."""

    window: int  # samples the encoder hears (pipeline.audio_encoder.window_samples)
    interval_s: float = DEFAULT_INTERVAL_S
    silence_dbfs: float = SILENCE_DBFS
    buffer: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)
    heard: int = 0  # samples received in all
    drawn_at: int = 0  # `heard` when the last picture was due
    pictures: int = 0  # windows handed out to draw
    shown: int = 0  # the number of the last picture the page got
    state: str = "waiting"
    session: str = field(default_factory=lambda: uuid.uuid4().hex)  # the LivePainter's key for this stream

    def hear(self, sampling_rate: int, samples: np.ndarray) -> np.ndarray | None:
        wave = to_mono_16k(np.asarray(samples), int(sampling_rate))
        self.heard += wave.shape[0]
        keep = 2 * self.window + int(self.interval_s * SAMPLE_RATE)
        self.buffer = np.concatenate([self.buffer, wave])[-keep:]
        due = int(self.interval_s * SAMPLE_RATE)
        if self.heard - self.drawn_at < due:
            self.state = "waiting"
            return None
        newest = self.buffer[-min(self.heard - self.drawn_at, self.buffer.shape[0]) :]
        self.drawn_at = self.heard
        if rms_dbfs(newest) < self.silence_dbfs:
            self.state = "silence"
            return None
        self.state = "drawing"
        self.pictures += 1
        return current_sound(self.buffer, self.window, self.silence_dbfs)


@dataclass
class LivePicture:
    """What the painter made of a session's window `number`: `value` (what `draw` returned) or `error` (what it raised)."""

    number: int
    value: Any = None
    error: BaseException | None = None
    seconds: float = 0.0


class LivePainter:
    """Draws live windows on one thread of its own, one at a time (live sessions share one scheduler): for each session
    only the newest window it asked for waits (a newer one replaces it), sessions are served in the order they asked,
    and each session's last picture waits for `latest`. Memory is bounded: one window and one picture a session, for
    at most `max_sessions` sessions (a session that vanished without stopping is dropped oldest first). The thread
    ends when nothing waits and starts again at the next `submit`."""

    def __init__(self, draw: Callable[..., Any], max_sessions: int = 64):
        self._draw = draw
        self._max_sessions = max_sessions
        self._changed = threading.Condition()
        self._waiting: OrderedDict[str, tuple[int, tuple]] = OrderedDict()  # session → (number, draw's arguments)
        self._done: OrderedDict[str, LivePicture] = OrderedDict()
        self._drawing: str | None = None  # the session whose window is being drawn
        self._discard: str | None = None  # forgotten while its window was drawn: that picture is not kept
        self._thread: threading.Thread | None = None

    def submit(self, session: str, number: int, *arguments) -> None:
        """Ask for window `number` of `session` to be drawn: `draw(*arguments)` on the painter's thread."""
        with self._changed:
            if self._discard == session:
                self._discard = None
            self._waiting.pop(session, None)
            self._waiting[session] = (number, arguments)
            while len(self._waiting) > self._max_sessions:
                self._waiting.popitem(last=False)
            if self._thread is None:
                self._thread = threading.Thread(target=self._paint, name="live-painter", daemon=True)
                self._thread.start()

    def latest(self, session: str, after: int = 0) -> LivePicture | None:
        """The session's last picture if its number is above `after` (one the page has not shown yet), else None."""
        with self._changed:
            picture = self._done.get(session)
        return picture if picture is not None and picture.number > after else None

    def busy(self, session: str) -> bool:
        """Whether a window of this session waits or is being drawn."""
        with self._changed:
            return session in self._waiting or self._drawing == session

    def wait(self, session: str | None = None, timeout: float | None = None) -> bool:
        """Wait until nothing of `session` (None: of any session) waits or is being drawn; False if `timeout` passed first."""
        with self._changed:
            if session is None:
                return self._changed.wait_for(lambda: not self._waiting and self._drawing is None, timeout)
            return self._changed.wait_for(lambda: session not in self._waiting and self._drawing != session, timeout)

    def forget(self, session: str) -> None:
        """Drop what the painter holds of a session that ended (a window being drawn still finishes, unseen)."""
        with self._changed:
            self._waiting.pop(session, None)
            self._done.pop(session, None)
            if self._drawing == session:
                self._discard = session

    def _paint(self) -> None:
        while True:
            with self._changed:
                if not self._waiting:
                    self._thread = None
                    self._changed.notify_all()
                    return
                session, (number, arguments) = self._waiting.popitem(last=False)
                self._drawing = session
            started = time.perf_counter()
            try:
                picture = LivePicture(number, value=self._draw(*arguments))
            except BaseException as error:  # noqa: BLE001  (handed to the session's handler, which tells its client)
                picture = LivePicture(number, error=error)
            picture.seconds = time.perf_counter() - started
            with self._changed:
                self._drawing = None
                self._done.pop(session, None)
                if self._discard == session:
                    self._discard = None
                else:
                    self._done[session] = picture
                while len(self._done) > self._max_sessions:
                    self._done.popitem(last=False)
                self._changed.notify_all()
