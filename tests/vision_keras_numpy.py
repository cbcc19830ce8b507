"""A plain-numpy forward pass of a Keras 2 functional model, read from its .hdf5 (JSON graph + weights).

Test support only: an independent code path (graph interpreter, NHWC layout, im2col convolutions
with TensorFlow's padding rules) to check the hand-written torch port in models/emotion.py
against what Keras computes, since TensorFlow cannot be installed here.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _tf_pad(n: int, k: int, s: int, padding: str) -> tuple[int, int, int]:
    """(out size, pad before, pad after) along one axis, as TensorFlow computes them."""
    if padding == "valid":
        return (n - k) // s + 1, 0, 0
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2, total - total // 2


def _pad_hw(x: np.ndarray, k: tuple[int, int], s: tuple[int, int], padding: str, value: float) -> np.ndarray:
    _, h, w, _ = x.shape
    _, t, b = _tf_pad(h, k[0], s[0], padding)
    _, l, r = _tf_pad(w, k[1], s[1], padding)
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


def _windows(x: np.ndarray, k: tuple[int, int], s: tuple[int, int]) -> np.ndarray:
    """(N, H, W, C) -> (N, OH, OW, C, kh, kw) strided windows."""
    v = sliding_window_view(x, k, axis=(1, 2))
    return v[:, :: s[0], :: s[1]]


def conv2d(x: np.ndarray, kernel: np.ndarray, stride, padding: str) -> np.ndarray:
    """x (N, H, W, Cin), kernel (kh, kw, Cin, Cout) -> (N, OH, OW, Cout), float64."""
    k, s = kernel.shape[:2], tuple(stride)
    win = _windows(_pad_hw(x, k, s, padding, 0.0), k, s)  # (N, OH, OW, Cin, kh, kw)
    return np.einsum("nhwcij,ijco->nhwo", win, kernel, optimize=True)


def depthwise2d(x: np.ndarray, kernel: np.ndarray, stride, padding: str) -> np.ndarray:
    """x (N, H, W, C), kernel (kh, kw, C, 1) -> (N, OH, OW, C)."""
    k, s = kernel.shape[:2], tuple(stride)
    win = _windows(_pad_hw(x, k, s, padding, 0.0), k, s)
    return np.einsum("nhwcij,ijc->nhwc", win, kernel[..., 0], optimize=True)


def max_pool(x: np.ndarray, pool, stride, padding: str) -> np.ndarray:
    k, s = tuple(pool), tuple(stride)
    return _windows(_pad_hw(x, k, s, padding, -np.inf), k, s).max(axis=(-2, -1))


def keras_forward(path: str | Path, x: np.ndarray, output: str | None = None) -> np.ndarray:
    """Run the Keras model in `path` on x (N, H, W, C) float; returns the output (float64) of layer
    `output` (default: the last layer).

    Supports the layer types of the fer mini-Xception and small MLPs: InputLayer, Conv2D,
    SeparableConv2D, BatchNormalization, Activation, MaxPooling2D, Add, GlobalAveragePooling2D,
    Dense, Dropout, Flatten.
    """
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        group = f["model_weights"]
        weights = {}
        for layer in group:
            found = {}
            group[layer].visititems(lambda n, o: found.__setitem__(n.split("/")[-1].split(":")[0],
                                                                   np.asarray(o, np.float64))
                                    if isinstance(o, h5py.Dataset) else None)
            weights[layer] = found
    layers = config["config"]["layers"]
    sequential = config["class_name"] == "Sequential"
    values: dict[str, np.ndarray] = {}
    prev = "__input__"
    values[prev] = np.asarray(x, np.float64)
    for layer in layers:
        kind, c = layer["class_name"], layer["config"]
        name = c["name"]
        if sequential:
            inputs = [values[prev]]
        elif layer.get("inbound_nodes"):
            inputs = [values[node[0]] for node in layer["inbound_nodes"][0]]
        else:
            inputs = [values["__input__"]]
        a = inputs[0]
        w = weights.get(name, {})
        if kind == "InputLayer":
            y = a
        elif kind == "Conv2D":
            y = conv2d(a, w["kernel"], c["strides"], c["padding"])
            if c.get("use_bias", True):
                y = y + w["bias"]
        elif kind == "SeparableConv2D":
            y = depthwise2d(a, w["depthwise_kernel"], c["strides"], c["padding"])
            y = conv2d(y, w["pointwise_kernel"], (1, 1), "valid")
            if c.get("use_bias", True):
                y = y + w["bias"]
        elif kind == "BatchNormalization":
            y = (a - w["moving_mean"]) / np.sqrt(w["moving_variance"] + c["epsilon"]) * w["gamma"] + w["beta"]
        elif kind == "MaxPooling2D":
            y = max_pool(a, c["pool_size"], c["strides"], c["padding"])
        elif kind == "Add":
            y = sum(inputs)
        elif kind == "GlobalAveragePooling2D":
            y = a.mean(axis=(1, 2))
        elif kind == "Flatten":
            y = a.reshape(len(a), -1)
        elif kind == "Dropout":
            y = a
        elif kind == "Dense":
            y = a @ w["kernel"] + (w["bias"] if c.get("use_bias", True) else 0.0)
        elif kind == "Activation":
            y = a
        else:
            raise NotImplementedError(f"layer type {kind}")
        act = c.get("activation")
        if act == "relu":
            y = np.maximum(y, 0.0)
        elif act == "softmax":
            e = np.exp(y - y.max(axis=-1, keepdims=True))
            y = e / e.sum(axis=-1, keepdims=True)
        elif act not in (None, "linear"):
            raise NotImplementedError(f"activation {act}")
        values[name] = y
        prev = name
    return values[output or prev]
