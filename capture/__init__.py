"""Capture: camera, microphone, files and browser streams as one timestamped, bounded flow.

Items (capture/items.py) — what every pipeline receives:
    VideoFrame(image, timestamp_s, index, media_time_s=None, source="")
        image: (H, W, 3) uint8 **RGB** (OpenCV's BGR is converted at capture); timestamp_s: time.monotonic().
    AudioChunk(samples, sample_rate, start_s, timestamp_s=0.0, source="")
        samples: (N,) float32 mono in [-1, 1], sample_rate 16000 (AUDIO_SAMPLE_RATE) from every source;
        start_s: position in the stream (chunks tile: next.start_s == this.end_s unless samples were dropped).

Sources (all `Source[T]`: context manager, iterate until end, `read(timeout_s)` -> item | None at end,
`read_latest()` -> newest item, skipping (and counting) older ones, `stats()` -> SourceStats(capture_fps,
dropped, queued, max_queued, retries, ...), `stop()` joins the thread and releases the device; a device
that fails is re-opened with back-off and, if it stays gone, raises CaptureError in the consumer within 2 s):
    open_video("0" | "rtsp://..." | "clip.mp4" | "frames/", VideoSettings(...))
        CameraSource(index_or_url), VideoFileSource(path), ImageFolderSource(folder)
        VideoSettings(realtime=True, queue_size=2, loop=False, ...): files replay at their fps
        (realtime=True, slow consumers see drops like a camera) or as fast as consumed (realtime=False, no drops).
    open_audio(None | "mic" | "speech.flac", AudioSettings(...))
        MicrophoneSource(), AudioFileSource(path); AudioSettings(chunk_s=0.1, realtime=True, ...)
    load_audio(path) -> (N,) float32 16 kHz mono, from any format/rate/channels (soundfile, else ffmpeg).

Browser (capture/browser.py): BrowserVideo().push(gradio_frame) -> VideoFrame,
    BrowserAudio().push((sample_rate, array)) -> AudioChunk | None — same items as local sources.

Voice activity (capture/vad.py): VoiceActivityDetector(VadSettings(model_path=SILERO_ONNX)) — silero VAD from
    the file the caller gives (models.vad_model.load_vad fetches it from the store), energy fallback (warns);
    .segments(samples) -> [SpeechSegment(start_s, end_s)]; streaming: .push(chunk) -> finished segments,
    .active_start_s while speech is ongoing, .finish().

Still images (capture/images.py): read_image_rgb(path_or_bytes, max_pixels=MAX_IMAGE_PIXELS) -> (H, W, 3) uint8,
    read_image_grey(...), check_image(...) -> (width, height); the pixel count is read from the header before
    anything is decoded; ImageError (a CaptureError) names the file.

Errors: CaptureError (a RuntimeError) whose message says what was found and what to do.
"""
from capture.audio import (
    AudioFileSource,
    AudioSettings,
    MicrophoneSource,
    StreamResampler,
    as_float32_mono,
    load_audio,
    open_audio,
    resample,
)
from capture.browser import BrowserAudio, BrowserVideo
from capture.buffers import AudioRing, BoundedQueue, DropPolicy
from capture.images import MAX_IMAGE_PIXELS, ImageError, check_image, read_image_grey, read_image_rgb
from capture.items import AUDIO_SAMPLE_RATE, AudioChunk, VideoFrame
from capture.source import CaptureError, Source, SourceStats
from capture.vad import SpeechSegment, VadSettings, VoiceActivityDetector
from capture.video import CameraSource, ImageFolderSource, VideoFileSource, VideoSettings, open_video

__all__ = [
    "AUDIO_SAMPLE_RATE", "AudioChunk", "AudioFileSource", "AudioRing", "AudioSettings", "BoundedQueue",
    "BrowserAudio", "BrowserVideo", "CameraSource", "CaptureError", "DropPolicy", "ImageError", "ImageFolderSource",
    "MAX_IMAGE_PIXELS",
    "MicrophoneSource", "Source", "SourceStats", "SpeechSegment", "StreamResampler", "VadSettings",
    "VideoFileSource", "VideoFrame", "VideoSettings", "VoiceActivityDetector", "as_float32_mono", "load_audio",
    "open_audio", "open_video", "resample", "check_image", "read_image_grey", "read_image_rgb",
]
