"""Video sources: a camera (index or stream URL), a video file, a folder of images.

All yield `VideoFrame`s (RGB uint8, monotonic timestamps) from a background thread through a bounded
queue. Live sources keep only the newest frames and count the rest as dropped; file sources replay at
the file's own pace (`realtime=True`, a stand-in for a camera in tests and benchmarks) or as fast as
the consumer takes them (`realtime=False`, nothing dropped).
"""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import cv2
import numpy as np

from capture.buffers import DropPolicy
from capture.images import ImageError, check_image
from capture.items import VideoFrame
from capture.source import CaptureError, Source

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".gif", ".ts", ".flv",
                  ".3gp", ".ogv", ".mjpeg", ".mjpg", ".h264", ".hevc")  # FFmpeg would also "decode" .txt as video


@dataclass(frozen=True)
class VideoSettings:
    queue_size: int = 2  # frames waiting for the consumer; live sources drop the oldest beyond this
    policy: DropPolicy | None = None  # None: drop_oldest for live and real-time replay, block for fast replay
    realtime: bool = True  # files: release frames at the file's fps (False: as fast as consumed)
    loop: bool = False  # files/folders: start again at the end (benchmarks, demos)
    folder_fps: float = 10.0  # pace of an image folder in real-time mode
    width: int | None = None  # cameras: ask for this capture size (the driver may refuse)
    height: int | None = None
    open_timeout_s: float = 5.0  # stream URLs: give up connecting/reading after this
    retry_first_s: float = 0.1  # a failing camera is re-opened after this, doubling each time ...
    retry_max_s: float = 0.4  # ... up to this
    give_up_after_s: float = 1.2  # ... and reported to the consumer as an error after this
    stall_timeout_s: float = 2.0  # live: a consumer waiting this long without a frame gets a CaptureError
    max_probe_index: int = 5  # "no camera at index N" lists which of 0..this open


def _policy(settings: VideoSettings, live: bool) -> DropPolicy:
    if settings.policy is not None:
        return DropPolicy(settings.policy)
    return DropPolicy.DROP_OLDEST if live or settings.realtime else DropPolicy.BLOCK


def to_rgb(image: np.ndarray) -> np.ndarray:
    """OpenCV BGR / BGRA / grey (H, W[, C]) uint8 -> (H, W, 3) uint8 RGB."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV logs a warning per failed open; the CaptureError says it better."""
    logging = getattr(cv2, "utils", None) and getattr(cv2.utils, "logging", None)
    if logging is None:
        yield
        return
    old = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(old)


class CaptureLike(Protocol):
    """The part of cv2.VideoCapture the camera thread uses (a seam for tests)."""

    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def release(self) -> None: ...
    def set(self, prop: int, value: float) -> bool: ...
    def get(self, prop: int) -> float: ...


def available_cameras(max_index: int = 5) -> list[int]:
    """Indices 0..max_index that OpenCV can open (and read a frame from)."""
    found = []
    with _quiet_opencv():
        for i in range(max_index + 1):
            cap = cv2.VideoCapture(i)
            try:
                if cap.isOpened() and cap.read()[0]:
                    found.append(i)
            finally:
                cap.release()
    return found


def _is_url(device: int | str) -> bool:
    return isinstance(device, str) and "://" in device


def _open_capture(device: int | str, settings: VideoSettings) -> CaptureLike:
    with _quiet_opencv():
        if _is_url(device):
            ms = int(settings.open_timeout_s * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            return cv2.VideoCapture(str(device), cv2.CAP_FFMPEG, params)
        cap = cv2.VideoCapture(int(device))
    if settings.width:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, settings.width)
    if settings.height:
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, settings.height)
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # we keep our own newest-frames queue; the driver's adds lag
    return cap


class CameraSource(Source[VideoFrame]):
    """A live camera by index (0, 1, ...) or a stream URL (rtsp://, http://...mjpg), newest frames only.

    A camera that stops delivering is re-opened with back-off; if it stays gone for
    `give_up_after_s`, the consumer's next read raises CaptureError (well within 2 s).
    `capture_factory(device, settings)` makes the VideoCapture; tests inject a VideoCapture-like object.
    """

    def __init__(self, device: int | str = 0, settings: VideoSettings = VideoSettings(),
                 capture_factory: Callable[[int | str, VideoSettings], CaptureLike] = _open_capture) -> None:
        super().__init__(settings.queue_size, _policy(settings, live=True))
        self.device = device
        self.settings = settings
        self.name = f"camera:{device}"
        self._factory = capture_factory
        self._cap: CaptureLike | None = None
        self._first: np.ndarray | None = None
        self._stall_timeout_s = settings.stall_timeout_s

    def _describe_failure(self) -> str:
        if _is_url(self.device):
            return (f"The stream {self.device} did not answer within {self.settings.open_timeout_s:g} s or is not "
                    "a video stream. Check the address in a browser or VLC, that the sender is running, and "
                    "that this machine can reach it; or pass a video file instead.")
        found = available_cameras(self.settings.max_probe_index)
        listed = ", ".join(map(str, found)) if found else "none"
        return (f"No camera at index {self.device}. Indices that open on this machine: {listed}. "
                + ("Pass one of those (--video N), " if found else "Plug in a webcam, close other apps using it, ")
                + "or pass a video file or image folder instead.")

    def _open(self) -> None:
        cap = self._factory(self.device, self.settings)
        ok, image = (cap.read() if cap.isOpened() else (False, None))
        if not ok or image is None:
            cap.release()
            raise CaptureError(self._describe_failure())
        self._cap, self._first = cap, image

    def _reopen(self) -> bool:
        if self._cap is not None:
            self._cap.release()
        self._cap = None
        try:
            cap = self._factory(self.device, self.settings)
        except Exception:  # noqa: BLE001 - a failed re-open is retried, then reported
            return False
        if cap.isOpened():
            self._cap = cap
            return True
        cap.release()
        return False

    def _produce(self) -> None:
        index = 0
        image, self._first = self._first, None
        failing_since: float | None = None
        delay_s = self.settings.retry_first_s
        while not self._stopping.is_set():
            if image is None:
                ok, image = self._cap.read() if self._cap is not None else (False, None)
                if not ok:
                    image = None
            now = time.monotonic()
            if image is not None:
                failing_since, delay_s = None, self.settings.retry_first_s
                self._emit(VideoFrame(to_rgb(image), now, index, None, self.name), now)
                index += 1
                image = None
                continue
            failing_since = failing_since or now
            if now - failing_since > self.settings.give_up_after_s:
                raise CaptureError(
                    f"{self.name} stopped delivering frames and did not come back after {self._retries} "
                    f"re-opens in {self.settings.give_up_after_s:g} s. Check the cable or network, and that no "
                    "other program took the camera; then start again.")
            remaining_s = self.settings.give_up_after_s - (now - failing_since)
            if self._stopping.wait(min(delay_s, remaining_s + 0.01)):
                break
            delay_s = min(delay_s * 2, self.settings.retry_max_s)
            self._retries += 1
            self._reopen()

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _check_file(path: Path, kind: str) -> None:
    if not path.exists():
        raise CaptureError(f"{kind} not found: {path}. Check the path (it is relative to {Path.cwd()}).")
    if path.is_file() and path.stat().st_size == 0:
        raise CaptureError(f"{kind} {path} is empty (0 bytes). Record or copy it again.")


class VideoFileSource(Source[VideoFrame]):
    """Frames of a video file, replayed at its fps (`realtime=True`) or as fast as consumed."""

    def __init__(self, path: str | Path, settings: VideoSettings = VideoSettings(realtime=True)) -> None:
        super().__init__(settings.queue_size, _policy(settings, live=False))
        self.path = Path(path)
        self.settings = settings
        self.name = f"file:{self.path.name}"
        self._cap: Any = None
        self.fps = 0.0
        self.frame_count = 0

    def _open(self) -> None:
        _check_file(self.path, "Video file")
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            hint = "pass the folder that holds the images" if suffix in IMAGE_SUFFIXES else \
                f"convert it with `ffmpeg -i {self.path.name} -c:v libx264 out.mp4`"
            raise CaptureError(f"{self.path}: {suffix or 'no extension'} is not a video format this reads "
                               f"({' '.join(VIDEO_SUFFIXES)}); {hint}.")
        with _quiet_opencv():
            cap = cv2.VideoCapture(str(self.path))
        ok = cap.isOpened() and cap.read()[0]
        if not ok:
            cap.release()
            raise CaptureError(
                f"Could not decode a frame from {self.path}: the file is corrupt, truncated or in an "
                f"unsupported format. Convert it with `ffmpeg -i {self.path.name} -c:v libx264 out.mp4` "
                "or pass another file.")
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        fps = cap.get(cv2.CAP_PROP_FPS)
        if not (np.isfinite(fps) and 0 < fps <= 1000):
            warnings.warn(f"{self.path} does not say its frame rate; replaying at 30 fps.", stacklevel=2)
            fps = 30.0
        self.fps = float(fps)
        self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self._cap = cap

    def _produce(self) -> None:
        start_s = time.monotonic()
        index = position = 0  # index counts across loops; position restarts with the file
        while not self._stopping.is_set():
            ok, image = self._cap.read()
            if not ok:
                if not (self.settings.loop and position > 0):
                    return
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                position = 0
                continue
            if not self._pace(start_s + index / self.fps if self.settings.realtime else None):
                return
            now = time.monotonic()
            self._emit(VideoFrame(to_rgb(image), now, index, position / self.fps, self.name), now)
            index += 1
            position += 1

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFolderSource(Source[VideoFrame]):
    """Images of a folder in name order, as frames at `folder_fps` (`realtime=True`) or as fast as consumed.

    Unreadable images are skipped with a warning and counted in `skipped`.
    """

    def __init__(self, folder: str | Path, settings: VideoSettings = VideoSettings(realtime=True)) -> None:
        super().__init__(settings.queue_size, _policy(settings, live=False))
        self.folder = Path(folder)
        self.settings = settings
        self.name = f"folder:{self.folder.name}"
        self.paths: list[Path] = []
        self.skipped = 0

    def _open(self) -> None:
        _check_file(self.folder, "Image folder")
        if not self.folder.is_dir():
            raise CaptureError(f"{self.folder} is a file, not a folder; pass the folder that holds the images.")
        files = sorted(p for p in self.folder.iterdir() if p.is_file())
        self.paths = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        if not self.paths:
            raise CaptureError(
                f"No images in {self.folder} (found {len(files)} other files). Put .jpg/.png images there "
                "or pass a video file.")

    def _produce(self) -> None:
        start_s = time.monotonic()
        index = 0
        while not self._stopping.is_set():
            for position, path in enumerate(self.paths):
                try:
                    check_image(path)  # pixel count from the header: a huge photo is refused, not decoded
                    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # (OpenCV applies the EXIF rotation)
                except ImageError as e:
                    image, why = None, str(e)
                else:
                    why = f"{path} is not a readable image (corrupt or unsupported)"
                if image is None:
                    self.skipped += 1
                    warnings.warn(f"Skipping: {why}.", stacklevel=2)
                    continue
                if not self._pace(start_s + index / self.settings.folder_fps if self.settings.realtime else None):
                    return
                now = time.monotonic()
                self._emit(VideoFrame(to_rgb(image), now, index, position / self.settings.folder_fps,
                                      f"{self.name}/{path.name}"), now)
                index += 1
            if not self.settings.loop or index == 0:
                if index == 0:
                    raise CaptureError(f"None of the {len(self.paths)} images in {self.folder} could be read.")
                return

    def _release(self) -> None:
        pass


def open_video(spec: int | str | Path, settings: VideoSettings | None = None) -> Source[VideoFrame]:
    """A source from a CLI-style spec: "0" (camera index), "rtsp://..." (stream), a folder, or a video file.

    Cameras and streams get live settings by default; files and folders replay in real time.
    """
    settings = settings or VideoSettings()
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        return CameraSource(int(spec), settings)
    if _is_url(spec):
        return CameraSource(str(spec), settings)
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path, settings)
    return VideoFileSource(path, settings)
