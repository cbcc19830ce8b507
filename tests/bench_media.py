"""A tiny evaluation-data folder made on the fly, laid out as ../shared/evaldata, for the benchmarks' smoke tests.

Only the layout and the kind of media matter here (the smoke tests check that each benchmark runs and ends
with its JSON line), so the faces are drawn, the hands are bench.synthetic's, the video is generated and the
speech is espeak-ng.
"""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from bench.synthetic import draw_hand
from conftest import speak

SR = 16_000
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FACES_PER_CLASS = 15  # bench.uncertainty samples drift windows of 100 faces without replacement
VIDEO_FRAMES = 210  # bench.uncertainty's video drift: 100 warm-up frames, then windows of 100
FILLER_SPEECH_S = 35.0  # per filler clip: the speech drift part needs 2 x 100 chunks of 0.5 s in each half


def write_csv(path: Path, header: list[str], rows: list[list[str]], delimiter: str = ",") -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)


def drawn_face(mood: int, seed: int) -> np.ndarray:
    """(48, 48) uint8 grey face: head, eyes, and a mouth whose curve depends on `mood`."""
    rng = np.random.default_rng(seed)
    img = np.full((48, 48), int(rng.integers(40, 90)), np.uint8)
    cv2.ellipse(img, (24, 25), (16, 20), 0, 0, 360, int(rng.integers(140, 200)), -1)
    for x in (17, 31):
        cv2.circle(img, (x, 19), 2, 30, -1)
    curve = (mood - 3) * 2
    cv2.ellipse(img, (24, 34), (7, abs(curve) + 1), 0, 0 if curve >= 0 else 180, 180 if curve >= 0 else 360, 40, 2)
    return img


def make_faces(folder: Path) -> None:
    folder.mkdir(parents=True)
    rows = []
    for k, label in enumerate(EMOTIONS):
        for i in range(FACES_PER_CLASS):
            name = f"{label}_{i}.png"
            cv2.imwrite(str(folder / name), drawn_face(k, seed=100 * k + i))
            rows.append([name, label])
    write_csv(folder / "labels.csv", ["path", "label"], rows)


def make_letters(folder: Path) -> None:
    folder.mkdir(parents=True)
    rows = []
    for i, label in enumerate(("A", "B", "C")):
        rgb = draw_hand(256, 256, cx=128, cy=120, scale=0.6, spread=0.6 + 0.3 * i, seed=i)
        cv2.imwrite(str(folder / f"{label}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        rows.append([f"{label}.png", label])
    write_csv(folder / "labels.csv", ["path", "label"], rows)


def make_video(path: Path) -> None:
    path.parent.mkdir(parents=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (160, 120))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for i in range(VIDEO_FRAMES):
        img = np.full((120, 160, 3), 60, np.uint8)
        face = cv2.resize(drawn_face(3, seed=i % 5), (72, 72))
        img[20:92, 44 + (i % 20):116 + (i % 20)] = face[..., None]
        writer.write(img)
    writer.release()


def make_speech(folder: Path) -> None:
    """jfk/jfk.wav (the clip bench.asr --quick and bench.uncertainty --quick pick) and long filler clips."""
    (folder / "jfk").mkdir(parents=True)
    (folder / "filler").mkdir()
    sentence = "The quick brown fox jumps over the lazy dog."
    speak(sentence, folder / "jfk" / "jfk.wav")
    rows = [["jfk/jfk.wav", sentence, "en", f"{sf.info(str(folder / 'jfk' / 'jfk.wav')).duration:.2f}", "espeak-ng"]]
    text = "Every morning the baker opens his shop and sells fresh bread to the people of the town. " * 5
    for i in range(4):
        path = speak(text, folder / "filler" / f"f{i}.wav", rate_wpm=140 + 10 * i)
        audio, _ = sf.read(str(path), dtype="float32")
        audio = np.resize(audio, int(FILLER_SPEECH_S * SR))
        sf.write(str(path), audio, SR)
        rows.append([f"filler/f{i}.wav", text.strip(), "en", f"{FILLER_SPEECH_S:.2f}", "espeak-ng"])
    write_csv(folder / "transcripts.tsv", ["path", "reference", "lang", "duration_s", "source"], rows, delimiter="\t")


def make_commands(folder: Path) -> None:
    """Two spoken command words, one other word and one noise clip (bench.commands' labels.csv)."""
    folder.mkdir(parents=True)
    rows = []
    for word, label in (("yes", "yes"), ("stop", "stop"), ("bird", "_unknown_")):
        path = speak(word, folder / f"{word}.wav")
        audio, _ = sf.read(str(path), dtype="float32")
        pad = np.zeros(int(0.25 * SR), np.float32)
        sf.write(str(path), np.concatenate([pad, audio, pad]), SR)
        rows.append([path.name, label, "espeak"])
    noise = np.random.default_rng(0).normal(0, 0.01, SR).astype(np.float32)
    sf.write(str(folder / "noise.wav"), noise, SR)
    rows.append(["noise.wav", "_silence_", "noise"])
    write_csv(folder / "labels.csv", ["path", "label", "person"], rows)


def make_evaldata(root: Path) -> Path:
    """The folder, laid out as ../shared/evaldata."""
    make_faces(root / "face_emotion")
    make_letters(root / "asl_letters")
    make_video(root / "face_video" / "face_frontal_static_528x592.mp4")
    make_speech(root / "speech_asr")
    make_commands(root / "speech_commands")
    return root
