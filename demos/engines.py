"""The app's seam to the model code: which pipelines exist, how a session opens one, shared loaders.

Everything model-specific the tabs need goes through here, so the tabs stay thin and the
imports of torch / mediapipe / whisper happen on first use, never when the page is built.
"""
from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from models.prediction import Prediction

if TYPE_CHECKING:
    from demos.handlers import AppContext, AppSettings

BUILTIN_TASKS = ("emotion", "sign")
TEAM_IMAGE = "team image model"  # the deployed image bundle (faces or whole frame)
TEAM_SIGN = "team sign model"  # the deployed landmarks bundle


def loaders(settings: "AppSettings") -> dict[str, Callable[[], Any]]:
    """Shared, load-once models (the ModelHub's table). Per-session objects are built from these."""

    def emotion() -> Any:
        # Builds (and closes) one pipeline: fetches the detector and classifier into the model
        # store and imports mediapipe/torch, so the first user's session opens in a blink.
        from models.pipelines import build_pipeline

        build_pipeline("emotion").close()
        return True

    def sign() -> Any:
        from models.pipelines import build_pipeline

        build_pipeline("sign").close()
        return True

    def asr() -> Any:
        from models.transcriber import Transcriber, TranscriberSettings

        return Transcriber(TranscriberSettings(model=settings.asr_model))

    def text_embedder() -> Any:
        from models.embeddings import load_text_embedder

        return load_text_embedder()

    return {"emotion": emotion, "sign": sign, "asr": asr, "text-embedder": text_embedder}


# --- vision ---------------------------------------------------------------------------------------


def vision_tasks(ctx: "AppContext") -> list[str]:
    tasks = list(BUILTIN_TASKS)
    if ctx.bundle("image") is not None:
        tasks.append(TEAM_IMAGE)
    if ctx.bundle("landmarks") is not None:
        tasks.append(TEAM_SIGN)
    return tasks


def open_vision(ctx: "AppContext", task: str) -> Any:
    """A per-session pipeline (its own face/hand tracks); models come from the store's cache."""
    from demos.handlers import user_error
    from models.pipelines import build_pipeline

    spec = task
    if task == TEAM_IMAGE or task == TEAM_SIGN:
        bundle = ctx.bundle("image" if task == TEAM_IMAGE else "landmarks")
        if bundle is None:
            raise user_error(f"No {task} is deployed; train one in the Train tab and press Deploy.")
        spec = str(bundle.root) if task == TEAM_IMAGE else f"sign:{bundle.root}"
    elif task not in BUILTIN_TASKS:
        raise user_error(f"Unknown task {task!r}; choose one of {', '.join(vision_tasks(ctx))}.")
    if task in BUILTIN_TASKS:
        try:
            ctx.hub.get(task)  # first use: fetch and warm the shared model (status line shows it)
        except Exception as e:
            raise user_error(f"The {task} model could not be loaded: {e}. Run `livelearner models fetch --default`.", e) from e
    return build_pipeline(spec)


def run_vision(pipeline: Any, image_rgb: np.ndarray, timestamp_s: float) -> list[Prediction]:
    from demos.handlers import user_error
    from models.pipelines import FrameError

    try:
        return pipeline.process(image_rgb, timestamp_s)
    except FrameError as e:
        raise user_error(str(e), e) from e


def draw(image_rgb: np.ndarray, predictions: list[Prediction]) -> np.ndarray:
    from models.overlay import draw_predictions

    return draw_predictions(image_rgb, predictions)


def face_crop(image_rgb: np.ndarray, box: tuple[int, int, int, int], size_px: int) -> np.ndarray:
    """(size, size, 3) RGB crop of a detected face in the framing the live learner pipeline uses."""
    from models.faces import CropSettings, FaceBox, crop_square, emotion_crop_box

    crop = emotion_crop_box(FaceBox(*box, score=1.0), CropSettings(size_px=size_px))
    return crop_square(image_rgb, crop, size_px)


def hand_features(image_rgb: np.ndarray) -> np.ndarray | None:
    """(63,) invariant landmark features of the first hand in a still frame, or None without a hand."""
    from models.hands import HandLandmarks, HandSettings, landmark_features

    landmarker = HandLandmarks(HandSettings(video_mode=False))  # per call: mediapipe graphs are not thread-safe
    try:
        hands = landmarker.detect(np.ascontiguousarray(image_rgb))
    finally:
        landmarker.close()
    return landmark_features(hands[0]) if hands else None


def read_image_file(path: Path) -> np.ndarray:
    """An uploaded file -> (H, W, 3) uint8 RGB, or a user-facing error when it is not an image."""
    import cv2

    from demos.handlers import user_error

    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else np.zeros(0, np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise user_error(f"{Path(path).name} is not an image OpenCV can read; upload a JPEG or PNG photo.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def close_quietly(obj: Any) -> None:
    close = getattr(obj, "close", None)
    if callable(close):
        try:
            close()
        except Exception as e:  # closing must never break the page
            warnings.warn(f"Closing {type(obj).__name__} failed: {e}")


# --- speech and text ------------------------------------------------------------------------------

_ZERO_SHOT_CACHE_SIZE = 32  # label sets kept embedded (users retype their classes)
_zero_shot_cache: dict[tuple[tuple[str, str], ...], Any] = {}


def zero_shot_classifier(ctx: "AppContext", descriptions: dict[str, str]) -> Any:
    """An in-memory zero-shot text bundle (models.bundle backend "zeroshot") for the typed classes."""
    from models.bundle import Bundle
    from train.datablocks import ZERO_SHOT_TEMPERATURE

    key = tuple(descriptions.items())
    cached = _zero_shot_cache.get(key)
    if cached is not None:
        return cached
    embedder = ctx.hub.get("text-embedder")
    classes = list(descriptions)
    emb = np.asarray(embedder.encode([descriptions[c] for c in classes]), dtype=np.float32)  # (C, 384)
    spec = {"format": 1, "task": "text", "backend": "zeroshot", "classes": classes,
            "temperature": ZERO_SHOT_TEMPERATURE, "calibrated": False, "conformal_qhat": None, "coverage": None,
            "policy": {"accept_at": ctx.settings.review.accept_at, "abstain_below": ctx.settings.review.abstain_below}}
    bundle = Bundle(Path("zero-shot"), spec, zeroshot=emb)
    bundle._embedder = embedder  # share the loaded MiniLM instead of loading one per label set
    if len(_zero_shot_cache) >= _ZERO_SHOT_CACHE_SIZE:
        _zero_shot_cache.pop(next(iter(_zero_shot_cache)))
    _zero_shot_cache[key] = bundle
    return bundle


def read_audio_file(path: Path) -> np.ndarray:
    """An uploaded recording -> (N,) float32 16 kHz mono, or a user-facing error."""
    from capture.audio import load_audio
    from capture.source import CaptureError
    from demos.handlers import user_error

    try:
        samples = load_audio(path)
    except (CaptureError, ValueError, OSError) as e:
        raise user_error(f"{Path(path).name} could not be read as audio: {e}", e) from e
    if samples.size == 0:
        raise user_error(f"{Path(path).name} holds no audio samples; record again.")
    return samples


# One Whisper decode at a time: decoding installs hooks on the shared model's modules (its
# key/value cache), so two sessions decoding at once would read each other's caches. On a 2-core
# CPU nothing is lost: a decode already uses both cores.
_ASR_LOCK = threading.Lock()


def open_asr_stream(ctx: "AppContext") -> Any:
    """A per-session streaming transcriber on the shared Whisper model (VAD-gated)."""
    from demos.handlers import user_error
    from models.streaming_asr import StreamingASR

    try:
        transcriber = ctx.hub.get("asr")
    except Exception as e:
        raise user_error(f"The speech model could not be loaded: {e}. Run `livelearner models fetch --default`.", e) from e
    return StreamingASR(transcriber)


def asr_step(stream: Any, chunk: Any) -> Any:
    """Add one AudioChunk and decode if enough new speech arrived -> StreamUpdate."""
    stream.insert_audio(chunk)
    with _ASR_LOCK:
        return stream.process_iter()


def asr_process(stream: Any) -> Any:
    """Decode if enough new speech arrived (audio already inserted) -> StreamUpdate."""
    with _ASR_LOCK:
        return stream.process_iter()


def asr_finish(stream: Any) -> Any:
    with _ASR_LOCK:
        return stream.finish()
