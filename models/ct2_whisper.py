"""CTranslate2 Whisper (`model.bin`, binary version 4+) → openai-whisper checkpoint (the store's conversion).

The CTranslate2 file is: uint32 binary version, the spec name ("WhisperSpec"), uint32 spec revision,
uint32 variable count, then per variable its name, rank, uint32 dims, a dtype byte, uint32 byte count
and the raw little-endian bytes; then uint32 alias count and (alias, target) name pairs.
Strings are uint16 length (counting a trailing NUL), bytes, NUL.

Layer mapping (CTranslate2 → openai-whisper):
- `*/self_attention/linear_0` fuses query|key|value along dim 0; decoder `attention/linear_0` is the
  cross-attention query and `attention/linear_1` fuses its key|value. openai-whisper key projections
  have no bias (CTranslate2 stores zeros there).
- `layer_norm/gamma|beta` are weight|bias; `position_encodings/encodings` is the positional embedding.
- dims follow from tensor shapes and the stored `num_heads`.
`alignment_heads` (which cross-attention heads follow the audio, for word timestamps) come from the
model's config.json and are stored in the checkpoint; `models.whisper_convert.load_whisper` applies them.
"""
from __future__ import annotations

import base64
import gzip
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

CT2_MIN_BINARY_VERSION = 4  # older files store dtypes differently
# CTranslate2 DataType ids → numpy dtypes (bfloat16 is read as raw uint16, converted by torch).
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}
_BFLOAT16 = 5


class CT2FormatError(ValueError):
    """The file is not a CTranslate2 Whisper model this converter understands."""


def read_ct2(path: str | Path) -> dict[str, np.ndarray | torch.Tensor]:
    """All variables of a CTranslate2 model.bin, aliases resolved. Arrays keep their stored dtype."""
    path = Path(path)
    buffer = bytearray(path.stat().st_size)  # writable, so tensors can share it without copies
    with open(path, "rb") as f:
        f.readinto(buffer)
    data = memoryview(buffer)
    offset = 0

    def take(fmt: str) -> Any:
        nonlocal offset
        try:
            (value,) = struct.unpack_from("<" + fmt, data, offset)
        except struct.error as e:
            raise CT2FormatError(f"{path}: file ends early at byte {offset} (truncated download?)") from e
        offset += struct.calcsize(fmt)
        return value

    def text() -> str:
        nonlocal offset
        n = take("H")
        if offset + n > len(data):
            raise CT2FormatError(f"{path}: file ends early at byte {offset} (truncated download?)")
        s = bytes(data[offset : offset + n - 1]).decode("utf-8", errors="replace")
        offset += n
        return s

    version = take("I")
    if not CT2_MIN_BINARY_VERSION <= version <= 64:
        raise CT2FormatError(f"{path}: not a CTranslate2 model of binary version >= 4 (read {version})")
    spec = text()
    if spec != "WhisperSpec":
        raise CT2FormatError(f"{path}: holds a {spec!r}, not a WhisperSpec")
    take("I")  # spec revision
    variables: dict[str, np.ndarray | torch.Tensor] = {}
    for _ in range(take("I")):
        name = text()
        shape = tuple(take("I") for _ in range(take("B")))
        dtype_id = take("B")
        n_bytes = take("I")
        if dtype_id not in _CT2_DTYPES:
            raise CT2FormatError(f"{path}: unknown dtype id {dtype_id} for {name}")
        if offset + n_bytes > len(data):
            raise CT2FormatError(f"{path}: file ends inside {name} (truncated download?)")
        array = np.frombuffer(data[offset : offset + n_bytes], dtype=_CT2_DTYPES[dtype_id]).reshape(shape)
        offset += n_bytes
        variables[name] = torch.from_numpy(array.copy()).view(torch.bfloat16) if dtype_id == _BFLOAT16 else array
    for _ in range(take("I")):
        alias, target = text(), text()
        if target not in variables:
            raise CT2FormatError(f"{path}: alias {alias} names a missing variable {target!r} (truncated download?)")
        variables[alias] = variables[target]
    return variables


def _t(x: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    tensor = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return tensor.to(dtype).contiguous()


def _count_layers(variables: dict, prefix: str) -> int:
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in variables:
        n += 1
    return n


def convert_state(
    variables: dict[str, np.ndarray | torch.Tensor], dtype: torch.dtype = torch.float16
) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    """(dims, state_dict) of an openai-whisper model from CTranslate2 variables."""
    v = variables
    quantized = [k for k in v if k.endswith("weight_scale")]
    if quantized:
        raise CT2FormatError(f"quantized CTranslate2 model ({quantized[0]}); convert a float16/float32 one")
    sd: dict[str, torch.Tensor] = {}

    def put(key: str, ct2_name: str) -> None:
        sd[key] = _t(v[ct2_name], dtype)

    def norm(key: str, ct2_prefix: str) -> None:
        put(f"{key}.weight", f"{ct2_prefix}/gamma")
        put(f"{key}.bias", f"{ct2_prefix}/beta")

    def linear(key: str, ct2_prefix: str, bias: bool = True) -> None:
        put(f"{key}.weight", f"{ct2_prefix}/weight")
        if bias:
            put(f"{key}.bias", f"{ct2_prefix}/bias")

    def fused(keys: tuple[str, ...], ct2_prefix: str) -> None:
        """Split a fused projection (q|k|v or k|v) along dim 0; keys have no bias."""
        weights = torch.chunk(_t(v[f"{ct2_prefix}/weight"], dtype), len(keys), dim=0)
        biases = torch.chunk(_t(v[f"{ct2_prefix}/bias"], dtype), len(keys), dim=0)
        for key, w, b in zip(keys, weights, biases):
            sd[f"{key}.weight"] = w.contiguous()
            if key.endswith(".key"):
                if b.abs().max() > 1e-6:  # would be silently dropped: refuse rather than degrade
                    raise CT2FormatError(f"{ct2_prefix}: key bias is not zero; this is not a Whisper model")
            else:
                sd[f"{key}.bias"] = b.contiguous()

    def attention_block(key: str, ct2: str, cross: bool) -> None:
        norm(f"{key}.attn_ln", f"{ct2}/self_attention/layer_norm")
        fused((f"{key}.attn.query", f"{key}.attn.key", f"{key}.attn.value"), f"{ct2}/self_attention/linear_0")
        linear(f"{key}.attn.out", f"{ct2}/self_attention/linear_1")
        if cross:
            norm(f"{key}.cross_attn_ln", f"{ct2}/attention/layer_norm")
            linear(f"{key}.cross_attn.query", f"{ct2}/attention/linear_0")
            fused((f"{key}.cross_attn.key", f"{key}.cross_attn.value"), f"{ct2}/attention/linear_1")
            linear(f"{key}.cross_attn.out", f"{ct2}/attention/linear_2")
        norm(f"{key}.mlp_ln", f"{ct2}/ffn/layer_norm")
        linear(f"{key}.mlp.0", f"{ct2}/ffn/linear_0")
        linear(f"{key}.mlp.2", f"{ct2}/ffn/linear_1")

    try:
        n_audio_layer = _count_layers(v, "encoder")
        n_text_layer = _count_layers(v, "decoder")
        linear("encoder.conv1", "encoder/conv1")
        linear("encoder.conv2", "encoder/conv2")
        put("encoder.positional_embedding", "encoder/position_encodings/encodings")
        for i in range(n_audio_layer):
            attention_block(f"encoder.blocks.{i}", f"encoder/layer_{i}", cross=False)
        norm("encoder.ln_post", "encoder/layer_norm")
        put("decoder.token_embedding.weight", "decoder/embeddings/weight")
        put("decoder.positional_embedding", "decoder/position_encodings/encodings")
        for i in range(n_text_layer):
            attention_block(f"decoder.blocks.{i}", f"decoder/layer_{i}", cross=True)
        norm("decoder.ln", "decoder/layer_norm")
        n_audio_state, n_mels, _ = v["encoder/conv1/weight"].shape  # (n_state, n_mels, kernel 3)
        n_vocab, n_text_state = v["decoder/embeddings/weight"].shape
        dims = dict(
            n_mels=int(n_mels),
            n_audio_ctx=int(v["encoder/position_encodings/encodings"].shape[0]),
            n_audio_state=int(n_audio_state),
            n_audio_head=int(v["encoder/num_heads"]),
            n_audio_layer=n_audio_layer,
            n_vocab=int(n_vocab),
            n_text_ctx=int(v["decoder/position_encodings/encodings"].shape[0]),
            n_text_state=int(n_text_state),
            n_text_head=int(v["decoder/num_heads"]),
            n_text_layer=n_text_layer,
        )
    except KeyError as e:
        raise CT2FormatError(f"CTranslate2 model lacks {e}; not a Whisper model this converter knows") from e
    return dims, sd


def alignment_heads_dump(heads: list[list[int]], n_text_layer: int, n_text_head: int) -> str:
    """Encode (layer, head) pairs the way openai-whisper's `set_alignment_heads` reads them."""
    mask = np.zeros((n_text_layer, n_text_head), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes())).decode("ascii")


def convert(model_bin: str | Path, config_json: str | Path | None, out_path: str | Path) -> dict[str, int]:
    """Write an openai-whisper checkpoint {'dims', 'model_state_dict', 'alignment_heads'} to out_path."""
    dims, state = convert_state(read_ct2(model_bin))
    checkpoint: dict[str, Any] = {"dims": dims, "model_state_dict": state}
    if config_json is not None:
        heads = json.loads(Path(config_json).read_text()).get("alignment_heads")
        if heads:
            checkpoint["alignment_heads"] = alignment_heads_dump(heads, dims["n_text_layer"], dims["n_text_head"])
    with open(out_path, "wb") as f:
        torch.save(checkpoint, f)
    return dims
