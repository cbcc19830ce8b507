"""Every sign-letter training photo with the person who signed it and the hand mediapipe found in it (cached).

The sign training data is three folders of `LETTER/*.jpg` with a labels.csv each, and the person column differs:
    asl_webcam_signers   `person` (51 people, webcam photos, short side 224 px)
    asl_other_signers    `signer` (Massey hand1..hand5, one ASL2Text phone signer)
    asl_alphabet_train   one person (Kaggle ASL Alphabet, 64x64 frames; its del/nothing/space frames are not letters)
`load_sign_photos(data)` reads them into one `SignPhotos`: the hand landmarks of each photo as the live page finds
them (IMAGE mode, one hand, the live thresholds; photos with a short side under DETECT_MIN_SIDE_PX upscaled first),
and, for the photos where that found none, what each second-pass variant of `RESCUES` finds. Landmarks are kept
raw (frame coordinates, world landmarks, handedness), so feature candidates are computed from the cache without
running mediapipe again. The cache (one .npz per folder) lives under `$LIVELEARNER_HOME/cache` or `cache`.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from models.hands import N_LANDMARKS, Hand, HandSettings
from train.datasets import cache_dir, folder_key, labelled_files

SIGN_FOLDERS = ("asl_webcam_signers", "asl_other_signers", "asl_alphabet_train")
DETECT_MIN_SIDE_PX = 256  # smaller photos (the 64x64 Kaggle frames) are upscaled (cubic) before detection
LIVE = HandSettings(max_hands=1, video_mode=False, rescue_pad=0.0)  # the page's shared landmarker, first pass
LIVE_RESCUE_PAD = HandSettings().rescue_pad  # the live second pass (models.hands.HandSettings default)
# Second passes tried on photos where LIVE found no hand: name -> (settings, downscale factor of the frame)
RESCUES: dict[str, tuple[HandSettings, float]] = {
    "pad25": (replace(LIVE, rescue_pad=0.25), 1.0),
    "pad50": (replace(LIVE, rescue_pad=0.5), 1.0),
    "half": (LIVE, 0.5),
    "conf30": (replace(LIVE, min_detection_confidence=0.3, min_presence_confidence=0.3), 1.0),
}
NO_LETTER = ("del", "nothing", "space")  # Kaggle classes that are not letters; "nothing" photos have no hand


@dataclass
class SignPhotos:
    """Photos with labels, people and hands; hand arrays hold NaN where no hand was found."""

    files: list[Path]
    labels: np.ndarray  # (N,) str
    persons: np.ndarray  # (N,) str, prefixed by the folder's short name (webcam:, other:, kaggle:)
    landmarks: np.ndarray  # (N, 21, 3) float32: x, y in [0, 1] of the photo's width/height, z in x's scale
    world: np.ndarray  # (N, 21, 3) float32 metres
    left: np.ndarray  # (N,) bool: mediapipe called it a left hand
    sizes: np.ndarray  # (N, 2) int: (width, height) of the photo as detected
    rescued: dict[str, np.ndarray]  # variant -> (N, 21, 3) landmarks found by that second pass (NaN: not found/not run)
    second_pass: np.ndarray  # (N,) bool: the hand in `landmarks` was found by the padded second pass (LIVE_RESCUE_PAD)

    @property
    def found(self) -> np.ndarray:
        return ~np.isnan(self.landmarks[:, 0, 0])

    def hand(self, i: int) -> Hand:
        """Photo i's hand as models.hands.Hand (the live pipeline's type), so features are computed the live way."""
        return Hand(self.landmarks[i], "Left" if self.left[i] else "Right", 1.0, tuple(int(v) for v in self.sizes[i]),
                    self.world[i])

    def subset(self, mask: np.ndarray) -> "SignPhotos":
        idx = np.flatnonzero(mask) if mask.dtype == bool else np.asarray(mask)
        return SignPhotos([self.files[i] for i in idx], self.labels[idx], self.persons[idx], self.landmarks[idx],
                          self.world[idx], self.left[idx], self.sizes[idx],
                          {k: v[idx] for k, v in self.rescued.items()}, self.second_pass[idx])

    @staticmethod
    def concat(parts: list["SignPhotos"]) -> "SignPhotos":
        return SignPhotos([f for p in parts for f in p.files], *(np.concatenate([getattr(p, k) for p in parts])
                          for k in ("labels", "persons", "landmarks", "world", "left", "sizes")),
                          {k: np.concatenate([p.rescued[k] for p in parts]) for k in parts[0].rescued},
                          np.concatenate([p.second_pass for p in parts]))


def _persons(root: Path, files: list[Path]) -> np.ndarray:
    """The signer of each file from the folder's labels.csv (`person` or `signer`); one person without either."""
    short = {"asl_webcam_signers": "webcam", "asl_other_signers": "other", "asl_alphabet_train": "kaggle"}
    prefix = short.get(root.name, root.name)
    by_path: dict[str, str] = {}
    table = root / "labels.csv"
    if table.is_file():
        with table.open(newline="") as f:
            for row in csv.DictReader(f):
                by_path[row["path"]] = row.get("person") or row.get("signer") or "signer"
    return np.array([f"{prefix}:{by_path.get(f'{f.parent.name}/{f.name}', 'signer')}" for f in files])


def detection_frame(rgb: np.ndarray) -> np.ndarray:
    """The frame the landmarker sees for a photo: photos with a short side under DETECT_MIN_SIDE_PX upscaled."""
    import cv2

    h, w = rgb.shape[:2]
    scale = DETECT_MIN_SIDE_PX / min(h, w)
    if scale <= 1:
        return rgb
    return cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)


def detect_variant(detectors: dict[str, object], name: str, frame: np.ndarray) -> list[Hand]:
    """Hands found by variant `name` ("live" or a RESCUES key) in `frame`, in `frame`'s coordinates."""
    import cv2

    det = detectors[name]
    factor = 1.0 if name == "live" else RESCUES[name][1]
    if factor == 1.0:
        return det.detect(frame)  # type: ignore[attr-defined]
    h, w = frame.shape[:2]
    small = cv2.resize(frame, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    return [Hand(hd.landmarks, hd.handedness, hd.score, (w, h), hd.world, f"{factor:g}x frame")
            for hd in det.detect(small)]  # type: ignore[attr-defined]


def open_detectors() -> dict[str, object]:
    """One IMAGE-mode landmarker per variant ("live" + RESCUES); close each with .close()."""
    from models.hands import load_hand_landmarks

    return {"live": load_hand_landmarks(LIVE), **{k: load_hand_landmarks(s) for k, (s, _) in RESCUES.items()}}


def _extract(root: Path, files: list[Path], out: Path, log: Callable[[str], None]) -> None:
    from capture.images import read_image_rgb

    n = len(files)
    lms = np.full((n, N_LANDMARKS, 3), np.nan, np.float32)
    world = np.full((n, N_LANDMARKS, 3), np.nan, np.float32)
    left = np.zeros(n, bool)
    sizes = np.zeros((n, 2), np.int32)
    rescued = {k: np.full((n, N_LANDMARKS, 3), np.nan, np.float32) for k in RESCUES}
    detectors = open_detectors()
    started = time.perf_counter()
    try:
        for i, f in enumerate(files):
            frame = detection_frame(read_image_rgb(f))  # (H, W, 3) uint8
            sizes[i] = frame.shape[1], frame.shape[0]
            hands = detect_variant(detectors, "live", frame)
            if hands:
                lms[i], left[i] = hands[0].landmarks, hands[0].handedness == "Left"
                if hands[0].world is not None:
                    world[i] = hands[0].world
                continue
            for name in RESCUES:
                found = detect_variant(detectors, name, frame)
                if found:
                    rescued[name][i] = found[0].landmarks
            if i % 500 == 0:
                log(f"  {root.name}: {i}/{n} photos, {time.perf_counter() - started:.0f} s")
    finally:
        for det in detectors.values():
            det.close()  # type: ignore[attr-defined]
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, landmarks=lms, world=world, left=left, sizes=sizes, **{f"rescued_{k}": v for k, v in rescued.items()})
    tmp.replace(out)
    log(f"hands: {root.name}: {int((~np.isnan(lms[:, 0, 0])).sum())}/{n} found in {time.perf_counter() - started:.0f} s")


def _extract_second_pass(files: list[Path], missed: np.ndarray, out: Path, log: Callable[[str], None]) -> None:
    """Hands the live second pass (a border of LIVE_RESCUE_PAD) finds in the photos the first pass missed."""
    from capture.images import read_image_rgb
    from models.hands import load_hand_landmarks

    n = len(files)
    lms = np.full((n, N_LANDMARKS, 3), np.nan, np.float32)
    world = np.full((n, N_LANDMARKS, 3), np.nan, np.float32)
    left = np.zeros(n, bool)
    det = load_hand_landmarks(replace(LIVE, rescue_pad=LIVE_RESCUE_PAD))
    try:
        for i in np.flatnonzero(missed):
            hands = det.detect_padded(detection_frame(read_image_rgb(files[i])))
            if hands:
                lms[i], left[i] = hands[0].landmarks, hands[0].handedness == "Left"
                if hands[0].world is not None:
                    world[i] = hands[0].world
    finally:
        det.close()
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, landmarks=lms, world=world, left=left)
    tmp.replace(out)
    log(f"second pass: {int((~np.isnan(lms[:, 0, 0])).sum())} of {int(missed.sum())} missed photos have a hand")


def load_folder(root: Path, cache: Path | None = None, log: Callable[[str], None] = print) -> SignPhotos:
    """One sign folder with its hands (extracted once, then read from the cache): the first pass's hand, else the
    live second pass's (when HandSettings.rescue_pad > 0)."""
    root = Path(root)
    files, labels = labelled_files(root)
    keep = [i for i, lab in enumerate(labels) if lab not in NO_LETTER or lab == "nothing"]
    files, labels = [files[i] for i in keep], [labels[i] for i in keep]
    key = folder_key(root, files, f"sign-photos-v1-{DETECT_MIN_SIDE_PX}-{'-'.join(RESCUES)}")
    path = Path(cache or cache_dir()) / f"sign-photos-{root.name}-{key}.npz"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        log(f"hands: {root.name}: looking for hands in {len(files)} photos (once; cached at {path})")
        _extract(root, files, path, log)
    with np.load(path) as z:
        photos = SignPhotos(files, np.array(labels), _persons(root, files), z["landmarks"], z["world"], z["left"],
                            z["sizes"], {k: z[f"rescued_{k}"] for k in RESCUES}, np.zeros(len(files), bool))
    if LIVE_RESCUE_PAD <= 0:
        return photos
    second = path.with_name(f"{path.stem}-pad{LIVE_RESCUE_PAD:g}.npz")
    if not second.is_file():
        _extract_second_pass(files, ~photos.found, second, log)
    with np.load(second) as z:
        use = ~photos.found & ~np.isnan(z["landmarks"][:, 0, 0])
        photos.landmarks[use], photos.world[use], photos.left[use] = z["landmarks"][use], z["world"][use], z["left"][use]
    photos.second_pass = use
    return photos


def load_sign_photos(data: Path, cache: Path | None = None, folders: tuple[str, ...] = SIGN_FOLDERS,
                     log: Callable[[str], None] = print) -> SignPhotos:
    """All sign photos under `data` (the training data folder holding SIGN_FOLDERS; missing ones are skipped)."""
    parts = [load_folder(Path(data) / name, cache, log) for name in folders if (Path(data) / name).is_dir()]
    if not parts:
        raise FileNotFoundError(f"no sign folders ({', '.join(folders)}) under {data}: pass the training data folder")
    return SignPhotos.concat(parts)
