"""CTranslate2 → openai-whisper conversion, on the real tiny.en model from the store."""
from __future__ import annotations

import base64
import gzip
import re

import numpy as np
import pytest
import torch
import whisper

from models.store import StoreError, ensure, status
from models.ct2_whisper import CT2FormatError, read_ct2
from models.whisper_convert import load_whisper


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


@pytest.fixture(scope="module")
def checkpoint_path():
    return ensure("whisper-tiny.en")


def test_converted_checkpoint_has_exactly_the_model_keys(checkpoint_path):
    ckpt = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    model = whisper.model.Whisper(whisper.model.ModelDimensions(**ckpt["dims"]))
    result = model.load_state_dict(ckpt["model_state_dict"], strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert ckpt["dims"]["n_vocab"] == 51864  # English-only vocabulary
    assert ckpt["dims"]["n_text_layer"] == 4 and ckpt["dims"]["n_audio_head"] == 6


def test_plain_whisper_load_model_accepts_the_file(checkpoint_path):
    model = whisper.load_model(str(checkpoint_path), device="cpu")
    assert not model.is_multilingual
    assert model.dims.n_mels == 80


@pytest.mark.parametrize("size", ["tiny.en", "base"])
def test_alignment_heads_are_those_openai_publishes(size, checkpoint_path):
    if size == "base" and status("whisper-base") != "present":
        pytest.skip("whisper-base is optional (145 MB): `livelearner models fetch whisper-base` to test it")
    model = load_whisper(size, device="cpu")
    upstream = whisper._ALIGNMENT_HEADS[size]
    shape = (model.dims.n_text_layer, model.dims.n_text_head)
    expected = np.frombuffer(gzip.decompress(base64.b85decode(upstream)), dtype=bool).reshape(shape)
    assert np.array_equal(model.alignment_heads.to_dense().numpy(), expected)
    assert model.is_multilingual == (size == "base")


@pytest.mark.slow
def test_converted_tiny_en_transcribes_espeak_speech(spoken):
    sentence = "The quick brown fox jumps over the lazy dog near the river bank"
    model = load_whisper("whisper-tiny.en", device="cpu")
    result = model.transcribe(str(spoken(sentence)), fp16=False, language="en", word_timestamps=True)
    heard = set(words(result["text"]))
    expected = words(sentence)
    hit_rate = sum(w in heard for w in expected) / len(expected)
    assert hit_rate >= 0.7, result["text"]
    starts = [w["start"] for s in result["segments"] for w in s["words"]]
    assert starts == sorted(starts) and starts[-1] > 2.0  # word timestamps spread over the ~4 s clip


def test_truncated_checkpoint_in_the_store_tells_user_to_refetch(checkpoint_path, tmp_path, monkeypatch):
    monkeypatch.setenv("LIVELEARNER_HOME", str(tmp_path))
    broken = tmp_path / "models" / "whisper-tiny.en" / "tiny.en.pt"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(checkpoint_path.read_bytes()[: 1 << 20])
    with pytest.raises(StoreError, match=r"livelearner models fetch whisper-tiny.en --force"):
        load_whisper(broken)


def test_a_file_outside_the_store_that_is_no_checkpoint_is_named(tmp_path):
    junk = tmp_path / "notes.pt"
    junk.write_text("not a model")
    with pytest.raises(ValueError, match="not an openai-whisper checkpoint"):
        load_whisper(junk)


def test_reader_rejects_files_that_are_not_ctranslate2(tmp_path):
    junk = tmp_path / "model.bin"
    junk.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(CT2FormatError):
        read_ct2(junk)


def write_ct2(path, variables: dict[str, np.ndarray], aliases: dict[str, str] = {}) -> None:
    """A CTranslate2 binary-version-6 file (the layout the converter reads), for format checks."""
    import struct

    def text(s: str) -> bytes:
        return struct.pack("<H", len(s) + 1) + s.encode() + b"\0"

    dtype_ids = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.float16): 4}
    out = struct.pack("<I", 6) + text("WhisperSpec") + struct.pack("<II", 3, len(variables))
    for name, a in variables.items():
        out += text(name) + struct.pack("<B", a.ndim) + struct.pack(f"<{a.ndim}I", *a.shape)
        out += struct.pack("<BI", dtype_ids[a.dtype], a.nbytes) + a.tobytes()
    out += struct.pack("<I", len(aliases)) + b"".join(text(a) + text(t) for a, t in aliases.items())
    path.write_bytes(out)


def test_reader_keeps_shapes_dtypes_and_resolves_aliases(tmp_path):
    weight = np.arange(6, dtype=np.float16).reshape(3, 2)
    write_ct2(tmp_path / "m.bin", {"decoder/embeddings/weight": weight, "decoder/num_heads": np.array(8, np.int16)},
              {"decoder/projection/weight": "decoder/embeddings/weight"})
    variables = read_ct2(tmp_path / "m.bin")
    assert np.array_equal(variables["decoder/projection/weight"], weight)
    assert variables["decoder/embeddings/weight"].dtype == np.float16 and int(variables["decoder/num_heads"]) == 8
    data = (tmp_path / "m.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) - 20])
    with pytest.raises(CT2FormatError, match="truncated"):
        read_ct2(tmp_path / "cut.bin")


def test_quantized_models_are_refused_not_silently_broken(tmp_path):
    from models.ct2_whisper import convert_state

    with pytest.raises(CT2FormatError, match="quantized"):
        convert_state({"encoder/layer_0/ffn/linear_0/weight": np.zeros((2, 2), np.int8),
                       "encoder/layer_0/ffn/linear_0/weight_scale": np.ones(2, np.float32)})
