"""Webcam tab: the browser camera (or an uploaded photo) through a live vision pipeline.

Live: the page shows its own camera at camera rate and sends frames over the live connection
(demos/live_transport.py) only as fast as results come back; `live_frame` answers each with data
(boxes, labels, probabilities, set, decision, reason, track id, the frame's capture time), which the
page draws over its video. No image travels back. Stale frames are dropped, never queued: the
connection keeps only the newest waiting frame. An uploaded photo, a `webcam_frame` API call and
this machine's camera go through the same `_analyse` and get an annotated image.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from capture.browser import BrowserVideo
from capture.source import CaptureError
from demos import vision_session
from demos.context import AppContext, new_session_id, user_error
from demos.inputs import clean_text, read_image_file
from demos.vision_session import VisionSession
from models.prediction import Prediction

FPS_WINDOW = 30  # results over which fps and latency are shown
SESSION_WAIT_S = 2.0  # a frame waits at most this long for the same session's previous frame
REVIEW_CROP_PX = 224  # review items keep the face crop in the framing a team image model is trained on


@dataclass
class WebcamState:
    """One browser tab's webcam session (lives in that user's gr.State)."""

    session_id: str = field(default_factory=new_session_id)
    vision: VisionSession | None = None  # per-session pipeline (face/hand tracks) on the hub's shared model
    video: BrowserVideo = field(default_factory=BrowserVideo)  # numbers and timestamps browser frames
    result_times_s: deque = field(default_factory=lambda: deque(maxlen=FPS_WINDOW))
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=FPS_WINDOW))
    last_frame: np.ndarray | None = None  # (H, W, 3) uint8 RGB, for capture and explanations
    last_predictions: list[Prediction] = field(default_factory=list)
    task: str = "emotion"  # the live connection's task and person: set by the page's controls
    person: str = ""
    live_token: str = ""  # demos.live_sessions: this page's live connection
    # one frame at a time per session: the tracker and mediapipe's graphs are not thread-safe
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def fps(self) -> float:
        t = self.result_times_s
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) >= 2 and t[-1] > t[0] else 0.0


def task_choices(ctx: AppContext) -> list[str]:
    return vision_session.vision_tasks(ctx)


def close_state(state: Any) -> None:
    """A user's session ended (Gradio's delete_callback): free its per-session pipeline."""
    vision = getattr(state, "vision", None)
    if vision is not None:
        vision.close()
        state.vision = None


def process_frame(
    ctx: AppContext, frame: np.ndarray | str | None, task: str, state: WebcamState | None, person: str = ""
) -> tuple[np.ndarray | None, dict[str, float] | None, str, WebcamState]:
    """One webcam frame (an RGB array, or an image file sent through the API) -> (annotated frame,
    top prediction's probabilities, summary, state)."""
    state = state if isinstance(state, WebcamState) else WebcamState()
    if frame is None:
        return None, None, "Waiting for the camera…", state
    if isinstance(frame, (str, Path)):
        frame = read_image_file(frame)
    person = clean_text(person, "name")
    if not state.lock.acquire(timeout=SESSION_WAIT_S):
        raise user_error("This session is still busy with earlier frames; the frame was dropped.")
    try:
        return _process_locked(ctx, frame, task, state, person)
    finally:
        state.lock.release()


def _process_locked(ctx: AppContext, frame: np.ndarray, task: str, state: WebcamState, person: str):
    predictions = _analyse(ctx, frame, task, state, person)
    annotated = vision_session.draw(state.last_frame, predictions)
    return annotated, _label(predictions), summary(predictions, state), state


def live_frame(ctx: AppContext, state: WebcamState, image: np.ndarray, seq: int, t_capture_ms: float) -> dict:
    """One frame from the page's live camera -> the result as data for its overlay (see overlay_data).

    The task and person are the ones the page's controls last set on `state` (set_live_choice)."""
    if not state.lock.acquire(timeout=SESSION_WAIT_S):
        raise user_error("This session is still busy with earlier frames; the frame was dropped.")
    try:
        predictions = _analyse(ctx, image, state.task, state, state.person)
    finally:
        state.lock.release()
    from models.overlay import overlay_data

    height, width = image.shape[:2]
    return {"type": "result", "seq": seq, "t_capture_ms": t_capture_ms, "width": width, "height": height,
            "task": state.task, "predictions": [overlay_data(p) for p in predictions],
            "summary": summary(predictions, state), "fps": round(state.fps, 2),
            "latency_ms": round(float(state.latencies_ms[-1]), 1) if state.latencies_ms else None}


def set_live_choice(ctx: AppContext, state: WebcamState | None, task: str, person: str = "") -> WebcamState:
    """The page's task menu or name changed: the live connection uses them from its next frame."""
    state = state if isinstance(state, WebcamState) else WebcamState()
    if task not in vision_session.vision_tasks(ctx):
        raise user_error(f"Unknown task {str(task)[:40]!r}; choose one of {', '.join(vision_session.vision_tasks(ctx))}.")
    state.task, state.person = task, clean_text(person, "name")
    return state


def _analyse(ctx: AppContext, frame: np.ndarray, task: str, state: WebcamState, person: str) -> list[Prediction]:
    """The pipeline on one frame, with everything a result does besides being shown: timing, the
    Monitor's statistics and the review queue (the caller holds state.lock)."""
    try:
        item = state.video.push(frame)
    except CaptureError as e:
        raise user_error(str(e), e) from e
    image = item.image
    state.vision = vision_session.current_session(ctx, state.vision, task)
    started = time.monotonic()
    predictions = vision_session.run(state.vision, image, item.timestamp_s)
    latency_ms = (time.monotonic() - started) * 1000.0
    state.result_times_s.append(time.monotonic())
    state.latencies_ms.append(latency_ms)
    state.last_frame, state.last_predictions = image, predictions
    pipeline_name = task
    ctx.monitor.record_frame(pipeline_name, image, predictions)
    ctx.monitor.record_timing(pipeline_name, latency_ms)
    for p in predictions:
        if ctx.settings.review.needs_review(p):  # crop only what goes to the queue
            crop = vision_session.face_crop(image, p.box, REVIEW_CROP_PX) if p.box is not None else image
            ctx.review.offer(task, p, crop, person=person or None, session=state.session_id)
    return predictions


def process_upload(ctx: AppContext, path: str | None, task: str, person: str = "") -> tuple[np.ndarray, dict | None, str]:
    """An uploaded photo through the same pipeline (a fresh session: no tracking across photos)."""
    if not path:
        raise user_error("Choose an image file first.")
    image = read_image_file(path)
    state = WebcamState()
    try:
        annotated, label, text, _ = process_frame(ctx, image, task, state, person)
    finally:
        close_state(state)
    return annotated, label, text


def explain_last(ctx: AppContext, state: WebcamState | None) -> tuple[np.ndarray | None, str]:
    """Grad-CAM of the last frame's first detection (image learners), else a note why not."""
    from demos import explain

    if not isinstance(state, WebcamState) or state.last_frame is None:
        raise user_error("Start the camera (or run a photo) first: there is no frame to explain yet.")
    pipeline = state.vision.pipeline if state.vision is not None else None
    return explain.explain_frame(pipeline, state.last_frame, state.last_predictions)


def summary(predictions: list[Prediction], state: WebcamState) -> str:
    """Markdown under the video: one line per detection, then fps and latency."""
    lines = []
    if not predictions:
        lines.append("No face or hand found in this frame.")
    for i, p in enumerate(predictions):
        pset = ", ".join(p.prediction_set) if p.prediction_set is not None else "n/a (uncalibrated)"
        cov = f" ({p.coverage:.0%} set)" if p.coverage else ""
        who = f"#{p.track_id}" if p.track_id is not None else f"{i + 1}"
        lines.append(
            f"**{who}: {p.label}** p={p.confidence:.2f} · decision **{p.decision.value}** ({p.reason}) · "
            f"set{cov}: {{{pset}}} · entropy {p.entropy:.2f} · {p.calibration_note}"
        )
    lat = np.median(state.latencies_ms) if state.latencies_ms else 0.0
    lines.append(f"\n{state.fps:.1f} results/s · model latency {lat:.0f} ms (median of {len(state.latencies_ms)})")
    return "\n\n".join(lines)


def _label(predictions: list[Prediction]) -> dict[str, float] | None:
    if not predictions:
        return None
    best = max(predictions, key=lambda p: (p.box[2] - p.box[0]) * (p.box[3] - p.box[1]) if p.box else 0)
    return best.as_label_dict()


def local_camera(ctx: AppContext, spec: str, task: str, person: str = ""):
    """This machine's camera (by number) through the same pipeline.

    A generator: Gradio shows each annotated frame as it is yielded; the Stop button cancels it.
    For the person at the machine (a teammate's browser camera goes through the Camera box): off when
    the page is served to others, and never a file path or URL (the CLI's `watch --source` reads those).
    Always the newest frame: older ones are dropped (and counted) by the capture source.
    """
    from capture.video import open_video

    if not ctx.settings.local_camera:
        raise user_error("This page is shared with others, so it does not open the server's own camera. "
                         "Use the Camera box (your browser's camera) instead.")
    spec = clean_text(spec, "camera", 10_000)
    if not (spec.isdigit() and len(spec) <= 3):
        raise user_error("Type this machine's camera number (0 is the first camera). Video files and stream "
                         "URLs are read with `livelearner watch --source` on the server, not from the page.")
    state = WebcamState()
    deadline = time.monotonic() + ctx.settings.stream_time_limit_s
    try:
        with open_video(spec) as source:
            while time.monotonic() < deadline:
                item = source.read_latest()
                if item is None:  # the camera stopped sending
                    break
                annotated, label, text, state = process_frame(ctx, item.image, task, state, person)
                stats = source.stats()
                yield annotated, label, f"{text}\n\ncamera {stats.capture_fps:.0f} fps · {stats.dropped} stale frames dropped"
    except (CaptureError, OSError) as e:  # no such camera, or the device stopped answering
        raise user_error(f"Camera {spec} could not be read: check that it is connected and not in use.", e) from e
    finally:
        close_state(state)
