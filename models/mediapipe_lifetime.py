"""Closing mediapipe Tasks objects without hanging the process.

A mediapipe task (FaceDetector, HandLandmarker) runs every call, `close` included, on its own worker
thread, and closes itself in `__del__`. When the task dies inside a reference cycle, the garbage
collector may stop that worker first; the `close` in `__del__` then waits forever on a thread that is
gone (seen as a test run stuck in `FaceDetector.__del__`). `close_with(owner, task)` ties the task to
the object that uses it: the task is closed when the owner's `close()` calls the returned finalizer, or
when the owner is collected, and until then the finalizer's strong reference keeps the task and its
worker alive, so the close always has a thread to run on.
"""
from __future__ import annotations

import weakref
from typing import Any


def close_with(owner: object, task: Any) -> weakref.finalize:
    """A finalizer that closes `task` once: call it from `owner.close()`; it also runs when `owner` is collected."""
    finalizer = weakref.finalize(owner, task.close)
    finalizer.atexit = False  # at interpreter exit the worker threads are already stopped
    return finalizer
