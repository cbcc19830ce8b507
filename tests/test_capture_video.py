"""Video sources on a generated mp4, an image folder, and a VideoCapture-like camera seam."""
from __future__ import annotations

import socket
import threading
import time
import warnings
import zlib

import cv2
import numpy as np
import pytest

from capture import CameraSource, CaptureError, ImageFolderSource, VideoFileSource, VideoSettings, open_video
from capture_helpers import FPS, MjpegServer, capture_threads, write_video

FRAMES = 45


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", FRAMES)


def test_fast_replay_delivers_every_frame_in_rgb_with_monotonic_times(video):
    before = capture_threads()
    with VideoFileSource(video, VideoSettings(realtime=False)) as source:
        frames = list(source)
        stats = source.stats()
    assert [f.index for f in frames] == list(range(FRAMES))
    times = [f.timestamp_s for f in frames]
    assert all(b >= a for a, b in zip(times, times[1:]))
    assert frames[10].media_time_s == pytest.approx(10 / FPS)
    red_left = frames[0].image[:, :20].reshape(-1, 3).mean(axis=0)
    assert red_left[0] > 200 and red_left[2] < 50, "frames must be RGB (red first)"
    assert frames[0].image.shape == (48, 64, 3) and frames[0].image.dtype == np.uint8
    assert stats.dropped == 0 and stats.delivered == FRAMES
    assert capture_threads() - before == set(), "stop() must join the capture thread"


def test_realtime_replay_keeps_pace(video):
    with VideoFileSource(video, VideoSettings(realtime=True, queue_size=4)) as source:
        frames = list(source)
        fps = source.stats().capture_fps
    t0 = frames[0].timestamp_s
    offsets = np.array([f.timestamp_s - f.index / FPS for f in frames])  # the same for all, on schedule
    lateness = np.abs(offsets - np.median(offsets))  # (not against frame 0: one late wake-up shifts no other)
    assert len(frames) == FRAMES
    assert float(np.median(lateness)) < 0.01, "frames are released on the file's schedule"
    assert lateness.max() < 0.1, f"a frame was released {lateness.max():.3f} s off schedule"
    assert frames[-1].timestamp_s - t0 == pytest.approx((FRAMES - 1) / FPS, rel=0.05)
    assert fps == pytest.approx(FPS, rel=0.1)


def test_slow_consumer_sees_counted_drops_and_bounded_queue(video):
    settings = VideoSettings(realtime=True, queue_size=2)
    got = []
    with VideoFileSource(video, settings) as source:
        for frame in source:
            got.append(frame.index)
            assert source.stats().queued <= 2
            time.sleep(3 / FPS)  # a model three times slower than the camera
        stats = source.stats()
    assert stats.captured == FRAMES and stats.max_queued <= 2
    assert stats.delivered == len(got) and stats.delivered + stats.dropped == FRAMES
    missing = sum(b - a - 1 for a, b in zip(got, got[1:])) + got[0]
    assert missing == stats.dropped and stats.dropped > FRAMES // 2
    assert got[-1] == FRAMES - 1, "the newest frame survives"


def test_read_latest_skips_to_newest_and_counts(video):
    with VideoFileSource(video, VideoSettings(realtime=False, queue_size=8, policy="block")) as source:
        first = source.read(timeout_s=2)
        time.sleep(0.2)  # the producer fills the queue meanwhile
        newest = source.read_latest(timeout_s=2)
        stats = source.stats()
    assert newest.index >= 8, "at least the 8 queued frames were skipped"
    assert stats.dropped == newest.index - first.index - 1 and stats.delivered == 2


def test_loop_replays_with_continuous_index(video):
    with VideoFileSource(video, VideoSettings(realtime=False, loop=True)) as source:
        frames = [source.read(timeout_s=2) for _ in range(FRAMES + 10)]
    assert [f.index for f in frames] == list(range(FRAMES + 10))
    assert frames[FRAMES].media_time_s == 0.0


def test_image_folder_skips_unreadable_with_warning(tmp_path):
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((20, 30, 3), i * 60, np.uint8))
    (tmp_path / "03b.jpg").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    # a photo declaring 12000x9000 pixels (108 MP) is refused from its header, never decoded
    big = tmp_path / "03c.png"
    cv2.imwrite(str(big), np.zeros((2, 2), np.uint8))
    data = bytearray(big.read_bytes())
    data[16:24] = (12000).to_bytes(4, "big") + (9000).to_bytes(4, "big")  # IHDR width, height ...
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # ... and the chunk's checksum
    big.write_bytes(bytes(data))
    with pytest.warns(UserWarning) as caught:
        with ImageFolderSource(tmp_path, VideoSettings(realtime=False)) as source:
            frames = list(source)
    messages = " ".join(str(w.message) for w in caught)
    assert "03b.jpg" in messages and "03c.png declares 12000x9000 pixels" in messages
    assert len(frames) == 4 and source.skipped == 2
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 60, 120, 180]


class FakeCamera:
    """A VideoCapture-like camera: frames at `fps` while `plugged[0]` is True (shared with the test)."""

    def __init__(self, plugged: list[bool], fps: float, counter: list[int]):
        self.plugged, self.period_s, self.counter = plugged, 1 / fps, counter
        self.opened = plugged[0]
        self.released = False

    def isOpened(self):
        return self.opened

    def read(self):
        time.sleep(self.period_s)
        if not (self.plugged[0] and self.opened):
            return False, None
        self.counter[0] += 1
        return True, np.full((24, 32, 3), self.counter[0] % 256, np.uint8)

    def release(self):
        self.released = True

    def set(self, prop, value):
        return True

    def get(self, prop):
        return 0.0


def fake_factory(plugged, fps=100.0):
    made: list[FakeCamera] = []
    counter = [0]

    def factory(device, settings):
        made.append(FakeCamera(plugged, fps, counter))
        return made[-1]

    return factory, made


def test_camera_that_disappears_errors_within_two_seconds_and_releases():
    plugged = [True]
    factory, made = fake_factory(plugged)
    before = capture_threads()
    source = CameraSource(0, VideoSettings(), capture_factory=factory).start()
    assert source.read(timeout_s=1) is not None
    plugged[0] = False
    unplugged_at = time.monotonic()
    with pytest.raises(CaptureError, match="stopped delivering frames"):
        while True:
            source.read()
    assert time.monotonic() - unplugged_at < 2.0
    assert source.stats().retries >= 2
    source.stop()
    assert all(cam.released for cam in made)
    assert capture_threads() - before == set()


def test_camera_recovers_after_a_short_dropout():
    plugged = [True]
    factory, made = fake_factory(plugged)
    with CameraSource(0, VideoSettings(), capture_factory=factory) as source:
        source.read(timeout_s=1)
        plugged[0] = False
        threading.Timer(0.3, lambda: plugged.__setitem__(0, True)).start()
        time.sleep(0.2)
        frames = [source.read() for _ in range(10)]
        assert source.stats().retries >= 1
    assert all(f is not None for f in frames) and len(made) >= 2


def test_stop_never_releases_a_camera_under_a_stuck_read(monkeypatch):
    import capture.source

    monkeypatch.setattr(capture.source, "JOIN_TIMEOUT_S", 0.2)
    factory, made = fake_factory([True])
    source = CameraSource(0, VideoSettings(), capture_factory=factory).start()
    source.read(timeout_s=1)
    driver_returns = threading.Event()
    made[0].read = lambda: (driver_returns.wait(5), None)  # the driver hangs inside read()
    time.sleep(0.05)
    with pytest.warns(UserWarning, match="stuck in the device driver"):
        source.stop()
    assert not made[0].released, "releasing under a read in progress can crash OpenCV"
    driver_returns.set()
    source._thread.join(2)
    assert made[0].released and not source._thread.is_alive()


def test_live_camera_keeps_only_newest_frames():
    factory, _ = fake_factory([True], fps=200.0)
    got = []
    with CameraSource(0, VideoSettings(queue_size=2), capture_factory=factory) as source:
        for _ in range(10):
            got.append(source.read())
            time.sleep(0.05)
        stats = source.stats()
    indices = [f.index for f in got]
    assert indices == sorted(indices) and stats.dropped > 10 and stats.max_queued <= 2
    assert stats.capture_fps > 100


def test_live_http_stream_through_opencv_drops_when_slow_and_errors_when_gone():
    """A real MJPEG stream read by OpenCV's FFmpeg backend: newest frames only, then the sender dies."""
    server = MjpegServer(fps=30)
    before = capture_threads()
    try:
        source = CameraSource(server.url, VideoSettings(open_timeout_s=2, queue_size=2)).start()
        frames = []
        for _ in range(8):
            frames.append(source.read())
            time.sleep(0.1)  # a model three times slower than the stream
        stats = source.stats()
        assert frames[0].image[:, :20].reshape(-1, 3).mean(axis=0)[0] > 200, "RGB order"
        assert stats.capture_fps == pytest.approx(30, rel=0.3) and stats.dropped >= 8 and stats.max_queued <= 2
        assert [f.index for f in frames] == sorted(f.index for f in frames)
    finally:
        server.close()
    gone_at = time.monotonic()
    with pytest.raises(CaptureError, match="stopped delivering frames"):
        while True:
            source.read()
    assert time.monotonic() - gone_at < 2.0
    source.stop()
    assert capture_threads() - before == set()


def test_no_camera_at_index_lists_what_opens():
    with pytest.raises(CaptureError, match=r"No camera at index 9\. Indices that open on this machine: "):
        CameraSource(9, VideoSettings(max_probe_index=2)).start()


def test_stream_url_that_does_not_answer_times_out():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # accepts connections, never answers
    url = f"http://127.0.0.1:{server.getsockname()[1]}/video.mjpg"
    t0 = time.monotonic()
    try:
        with pytest.raises(CaptureError, match="did not answer within 1 s"):
            CameraSource(url, VideoSettings(open_timeout_s=1.0)).start()
    finally:
        server.close()
    assert time.monotonic() - t0 < 4.0


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.mp4", None, "not found"),
        ("empty.mp4", b"", "is empty"),
        ("corrupt.mp4", bytes(range(256)) * 40, "corrupt, truncated or in an unsupported format"),
        ("notes.txt", b"hello, not a video\n" * 50, r"\.txt is not a video format"),
    ],
)
def test_bad_video_files_explain_themselves(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CaptureError, match=message):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            VideoFileSource(path).start()


def test_open_video_dispatch(tmp_path, video):
    assert isinstance(open_video("0"), CameraSource)
    assert isinstance(open_video("rtsp://example/stream"), CameraSource)
    assert isinstance(open_video(tmp_path), ImageFolderSource)
    assert isinstance(open_video(str(video)), VideoFileSource)
