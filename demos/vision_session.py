"""One user's live vision session: a cheap per-session pipeline (tracks only) on the hub's shared model.

The model (weights, detector graphs) is loaded once per process by the ModelHub; a session adds
only its own face or hand tracks. Each frame checks the hub entry's generation: after a Deploy,
the next frame of every open session rebuilds its pipeline on the new model, so "live now" holds
for sessions that were already open.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from demos.context import AppContext, VisionModel, user_error
from demos.deployed import LIVE_VISION_NAME
from models.prediction import Prediction

BUILTIN_TASKS = ("emotion", "sign")
TEAM_IMAGE = LIVE_VISION_NAME["image"]  # the deployed image bundle (faces or whole frame)
TEAM_SIGN = LIVE_VISION_NAME["landmarks"]  # the deployed landmarks bundle


@dataclass
class VisionSession:
    """The pipeline of one session and the hub entry (name, generation) it was built from."""

    task: str
    pipeline: Any  # models.pipelines.Pipeline: per-session tracks over the shared model
    generation: int

    def close(self) -> None:
        close_quietly(self.pipeline)


def vision_tasks(ctx: AppContext) -> list[str]:
    tasks = list(BUILTIN_TASKS)
    if ctx.bundle("image") is not None:
        tasks.append(TEAM_IMAGE)
    if ctx.bundle("landmarks") is not None:
        tasks.append(TEAM_SIGN)
    return tasks


def current_session(ctx: AppContext, session: VisionSession | None, task: str) -> VisionSession:
    """`session` if it still fits `task` and the hub's model, else a new one (the old one closed)."""
    if task not in vision_tasks(ctx):
        if task in (TEAM_IMAGE, TEAM_SIGN):
            raise user_error(f"No {task} is deployed; train one in the Train tab and press Deploy.")
        raise user_error(f"Unknown task {str(task)[:40]!r}; choose one of {', '.join(vision_tasks(ctx))}.")
    if session is not None and session.task == task and session.generation == ctx.hub.generation(task):
        return session
    if session is not None:
        session.close()
    return open_session(ctx, task)


def open_session(ctx: AppContext, task: str) -> VisionSession:
    from models.pipelines import build_pipeline

    generation = ctx.hub.generation(task)  # read first: a deploy during the load is noticed next frame
    try:
        model: VisionModel = ctx.hub.get(task)
    except Exception as e:
        raise user_error(f"The {task} model could not be loaded ({type(e).__name__}). "
                         "Run `livelearner models fetch --default` on the server, or deploy another model.", e) from e
    return VisionSession(task, build_pipeline(model.spec, shared=model.shared), generation)


def run(session: VisionSession, image_rgb: np.ndarray, timestamp_s: float) -> list[Prediction]:
    from models.pipelines import FrameError

    try:
        return session.pipeline.process(image_rgb, timestamp_s)
    except FrameError as e:
        raise user_error(f"This frame cannot be read as an image ({e}).", e) from e


def draw(image_rgb: np.ndarray, predictions: list[Prediction]) -> np.ndarray:
    from models.overlay import draw_predictions

    return draw_predictions(image_rgb, predictions)


def face_crop(image_rgb: np.ndarray, box: tuple[int, int, int, int], size_px: int) -> np.ndarray:
    """(size, size, 3) RGB crop of a detected face in the framing the live learner pipeline uses."""
    from models.faces import CropSettings, FaceBox, crop_square, emotion_crop_box

    crop = emotion_crop_box(FaceBox(*box, score=1.0), CropSettings(size_px=size_px))
    return crop_square(image_rgb, crop, size_px)


def hand_features(image_rgb: np.ndarray) -> np.ndarray | None:
    """(63,) invariant landmark features of the first hand in a still frame, or None without a hand.

    A still-image landmarker per call (the Train tab's "add frame" button, not the live path):
    the live sessions' landmarkers run in video mode, which needs increasing timestamps."""
    from models.hands import HandSettings, landmark_features, load_hand_landmarks

    landmarker = load_hand_landmarks(HandSettings(video_mode=False))
    try:
        hands = landmarker.detect(np.ascontiguousarray(image_rgb))
    finally:
        landmarker.close()
    return landmark_features(hands[0]) if hands else None


def close_quietly(obj: Any) -> None:
    close = getattr(obj, "close", None)
    if callable(close):
        try:
            close()
        except Exception as e:  # closing must never break the page
            warnings.warn(f"Closing {type(obj).__name__} failed: {e}")
