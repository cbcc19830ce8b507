"""Closing mediapipe Tasks objects without hanging the process.

A mediapipe task (FaceDetector, HandLandmarker) runs every call, `close` included, on its own worker thread
through a `ThreadPoolExecutor`, whose `submit` holds a process-wide lock while it allocates. When the cyclic
garbage collector runs inside such a `submit` (any thread calling any mediapipe task) and frees a task, or an
object whose finalizer closes one, that `close` calls `submit` again and waits forever for the lock its own
thread holds. Seen as a test run stuck for an hour (a deploy had dropped the old hand landmarker in a cycle);
reproduced with owners dying in cycles beside a thread calling `detect`: stuck within seconds, stack
`submit -> Future.__init__ -> weakref finalize -> HandLandmarker.close -> submit`.

So a task is never closed from the collector: `close_with(owner, task)` returns a `TaskCloser`. Calling it (from
the owner's `close()`) closes the task at once. If instead the owner is collected, its finalizer only puts the task
on a queue (`queue.SimpleQueue.put` takes no lock: safe in a finalizer), and the `mediapipe-closer` thread closes it
there, outside every lock. Until then the queue's reference keeps the task and its worker alive, so the close always
has a thread to run on; afterwards the task's own `__del__` finds it closed and does nothing.
"""
from __future__ import annotations

import queue
import threading
import weakref
from typing import Any

_to_close: queue.SimpleQueue = queue.SimpleQueue()
_closer_lock = threading.Lock()
_closer: threading.Thread | None = None


def _close_queued() -> None:
    while True:
        task = _to_close.get()
        try:
            task.close()
        except Exception:  # noqa: BLE001 - a task that cannot close leaks its graph; the process goes on
            pass
        del task


def _start_closer() -> None:
    """Start the closer thread once (from ordinary code, never from a finalizer: starting a thread takes locks)."""
    global _closer
    with _closer_lock:
        if _closer is None or not _closer.is_alive():
            _closer = threading.Thread(target=_close_queued, name="mediapipe-closer", daemon=True)
            _closer.start()


class TaskCloser:
    """Closes one mediapipe task: now when called, on the closer thread when its owner is collected first."""

    def __init__(self, owner: object, task: Any) -> None:
        _start_closer()
        self._finalizer = weakref.finalize(owner, _to_close.put, task)
        self._finalizer.atexit = False  # at interpreter exit the worker threads are already stopped

    def __call__(self) -> None:
        """Close the task now (once; later calls do nothing)."""
        info = self._finalizer.detach()  # (owner, func, args, kwargs) while not yet run
        if info is not None:
            info[2][0].close()

    @property
    def alive(self) -> bool:
        """The task is not closed yet, nor queued to be."""
        return self._finalizer.alive


def close_with(owner: object, task: Any) -> TaskCloser:
    """Tie `task`'s close to `owner`: call the result from `owner.close()`; if `owner` is collected, it is closed too."""
    return TaskCloser(owner, task)
