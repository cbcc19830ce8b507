"""Every benchmark runs `--quick` on a tiny generated data folder and ends with its JSON line.

A merge that breaks a benchmark (as bench.commands once crashed on a changed constructor) fails here.
bench.capture has its own test (test_capture_bench.py); bench.load and bench.browser drive a running page
and are tested with it. The figures here come from drawn faces and espeak-ng speech: only their presence
and ranges are checked, never their values as targets.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench_media import make_evaldata


@pytest.fixture(scope="module")
def evaldata(tmp_path_factory) -> Path:
    return make_evaldata(tmp_path_factory.mktemp("evaldata"))


def last_json(capsys) -> dict:
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) >= 2, lines  # readable figures, then the JSON line
    return json.loads(lines[-1])


def between(x: float, low: float, high: float) -> bool:
    return not math.isnan(x) and low <= x <= high


@pytest.mark.slow
def test_bench_accuracy_emotion(evaldata, capsys):
    from bench import accuracy

    assert accuracy.main(["--task", "emotion", "--data", str(evaldata), "--quick"]) == 0
    out = last_json(capsys)
    assert out["n"] == 7 * 15 and between(out["accuracy"], 0, 1) and between(out["ece"], 0, 1)


@pytest.mark.slow
def test_bench_accuracy_sign(evaldata, capsys):
    from bench import accuracy

    assert accuracy.main(["--task", "sign", "--data", str(evaldata), "--quick"]) == 0
    out = last_json(capsys)
    assert out["n"] == 3 and out["hand_detection_rate"] > 0  # the drawn hand is found


@pytest.mark.slow
def test_bench_uncertainty(evaldata, capsys):
    from bench import uncertainty

    assert uncertainty.main(["--data", str(evaldata), "--quick"]) == 0
    out = last_json(capsys)
    assert out["emotion_n"] == 7 * 15 and between(out["emotion_set_coverage"], 0, 1)
    assert out["speech_n_segments"] >= 1 and between(out["speech_mean_confidence"], 0, 1)
    assert out["drift_windows_clean"] > 0 and between(out["drift_false_alarm_rate"], 0, 1)


@pytest.mark.slow
def test_bench_vision(evaldata, capsys):
    from bench import vision

    assert vision.main(["--data", str(evaldata), "--quick", "--pipelines", "emotion,sign_hand"]) == 0
    out = last_json(capsys)
    assert out["emotion_fps"] > 0 and out["sign_hand_found_fraction"] > 0.5


@pytest.mark.slow
def test_bench_sessions(evaldata, capsys):
    from bench import sessions

    assert sessions.main(["--data", str(evaldata), "--quick"]) == 0
    out = last_json(capsys)
    assert out["frames_per_session"] == 2


@pytest.mark.slow
def test_bench_asr(evaldata, capsys):
    from bench import asr

    asr.main(["--data", str(evaldata / "speech_asr"), "--quick", "--clock", "cpu"])
    out = last_json(capsys)
    assert out["n_clips"] == 1 and out["ref_words"] == 9 and out["committed_words"] >= 5
    assert between(out["wer_offline"], 0, 60) and between(out["before"]["wer_streaming"], 0, 100)
    assert out["commit_latency_median_s"] > 0 and out["before"]["beam_size"] == 1 and out["beam_size"] == 3


@pytest.mark.slow
def test_bench_commands(evaldata, capsys):
    from bench import commands

    commands.main(["--data", str(evaldata), "--quick"])
    out = last_json(capsys)
    assert out["n_command_clips"] == 2 and out["n_unknown_silence_clips"] == 2
    assert between(out["accuracy"], 0, 1) and between(out["confident_wrong_rate"], 0, 1)
    assert between(out["text_path_accuracy"], 0, 1)


TRAINDATA = Path(__file__).resolve().parents[1].parent / "shared" / "traindata"


@pytest.mark.slow
@pytest.mark.skipif(not (TRAINDATA / "speech_commands_v0.01_sample" / "labels.csv").is_file(),
                    reason="needs ../shared/traindata/speech_commands_v0.01_sample (real voices; not in a clean clone)")
def test_bench_commands_conditions(capsys):
    from bench import commands

    conditions = ("clean", "telephone", "noisy")
    commands.main(["--data", str(TRAINDATA), "--conditions", ",".join(conditions), "--quick"])
    out = last_json(capsys)
    assert out["persons"] == out["folds"] == 5 and out["fit_conditions"] == list(conditions)
    for c in conditions:  # 14 clips x 2 label sets of 5 held-out speakers, every clip in every condition
        assert out[f"{c}_n"] == out["clean_n"] > 0
        assert between(out[f"{c}_accuracy"], 0, 1) and between(out[f"{c}_ece"], 0, 1)
        assert between(out[f"{c}_confident_wrong_rate"], 0, 1) and between(out[f"{c}_false_reject_rate"], 0, 1)
    # a fit on 4 speakers' 12 clips is crude (clean accuracy 0.625 of 8 label words), but not blind:
    assert out["clean_accuracy"] > 0 and out["clean_reject_unknown_rate"] >= 0.5


@pytest.mark.slow
def test_bench_asr_calibration(tmp_path, capsys):
    from bench import asr_calibration

    asr_calibration.main(["--make-corpus", str(tmp_path / "corpus"), "--n", "2"])
    assert len((tmp_path / "corpus" / "transcripts.tsv").read_text().splitlines()) == 3
    asr_calibration.main(["--quick", "--out", str(tmp_path / "maps")])
    out = last_json(capsys)
    assert out["n_examples"] > 0 and set(json.loads((tmp_path / "maps" / "maps.json").read_text())) == {"correct", "hallucinated"}


@pytest.mark.slow
def test_bench_train(capsys):
    from bench import train

    assert train.main(["--quick"]) == 0
    out = last_json(capsys)
    assert between(out["image_conformal_coverage"], 0, 1) and out["landmark_fit_wall_s"] > 0
