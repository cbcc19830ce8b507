"""Sign-letter classifiers that take mediapipe hands (models.hands.Hand) and return probabilities.

Two kinds:
- `PackagedLetterMLP`: the Keras MLP shipped in asl-alpnum-recognizer==0.6, read with h5py and run in
  numpy (four dense layers: 63 -> 128 -> 68 -> 68 -> 40). It is offered because it needs no
  training, but it is weak, and this is why (see WEAKNESS): it was trained on cvzone's raw landmark
  *pixels* (int(x*W), int(y*H), int(z*W)) of one webcam, so its output depends on where the hand is
  in the frame, how far from the camera, the camera's resolution, and which hand is used.
- `BundleSignClassifier`: any "landmarks" bundle trained by the team from its own captured samples
  (models/bundle.py) -- the real default. Its items are `models.hands.hand_features` vectors of the
  kind bundle.json's input.features names ("hand_invariant_v1" when it names none; the kinds are
  listed in models.hands.FEATURE_DIMS), computed by the same function training used.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from models.bundle import Bundle, load_bundle
from models.hands import FEATURE_DIMS, N_FEATURES, Hand, hand_features
from models.prediction import UNCALIBRATED, RoutingPolicy, softmax

STORE_NAME = "asl-landmark-mlp"
# Output index -> label, as in the package's recognize.py (index 38 has no label there).
PACKAGED_LABELS = ("1", "10", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B", "Nothing", "C", "D", "E", "F",
                   "G", "H", "I", "J", "K", "L", "M", "N", "O", "P", "Q", "R", "S", "T", "U", "V", "W", "X",
                   "Y", "Z", "del", "unlabelled_38", "space")
WEAKNESS = (
    "The packaged asl-alpnum-recognizer MLP reads raw landmark pixel coordinates, so its answer changes "
    "with the hand's position in the frame, its distance, the camera resolution and the hand used. Measured "
    "on the 608 64x64 ASL-alphabet evaluation photos (upscaled to 256 px): a hand is found in 28% of them, "
    "the letter is right on 0.61 [0.53, 0.68] of those, with calibration error 0.20 (overconfident); end to "
    "end 0.20. Train your own landmark model from captured samples for real use."
)


class SignClassifier(Protocol):
    classes: tuple[str, ...]
    policy: RoutingPolicy
    calibrated: bool
    calibration: str | None  # on what data the probabilities were calibrated (models.prediction)
    conformal_qhat: float | None
    coverage: float | None

    def inputs(self, hands: Sequence[Hand]) -> np.ndarray:  # (N, D); ValueError for degenerate hands
        ...

    def predict_probs(self, hands: Sequence[Hand]) -> np.ndarray:  # (N, C)
        ...


class PackagedLetterMLP:
    """The asl-alpnum-recognizer Keras MLP ported to numpy (float32). Weak: see WEAKNESS.
    It reads the .h5 file it is given (`load_sign_classifier("packaged")` fetches it)."""

    def __init__(self, path: str | Path, policy: RoutingPolicy = RoutingPolicy(), temperature: float = 1.0) -> None:
        self.layers = _read_dense_layers(Path(path))
        if self.layers[0][0].shape[0] != N_FEATURES or self.layers[-1][0].shape[1] != len(PACKAGED_LABELS):
            raise ValueError(f"{path} is not the asl-alpnum-recognizer MLP (63 inputs, 40 outputs); "
                             f"run `livelearner models fetch {STORE_NAME}`")
        self.classes = PACKAGED_LABELS
        self.policy = policy
        self.temperature = temperature
        self.calibrated = False  # never fitted on data here (a temperature passed in is set by hand)
        self.calibration = (UNCALIBRATED if temperature == 1.0
                            else f"uncalibrated: temperature {temperature:g} set by hand")
        self.conformal_qhat: float | None = None
        self.coverage: float | None = None
        warnings.warn(WEAKNESS, stacklevel=2)

    @staticmethod
    def inputs(hands: Sequence[Hand]) -> np.ndarray:
        """(N, 63) what the package fed its model: cvzone's int pixel landmarks (x*W, y*H, z*W)."""
        return np.stack([np.trunc(h.pixels).reshape(-1) for h in hands]).astype(np.float32)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, 63) -> (N, 40): the dense stack, ReLU between layers; the last softmax left out."""
        for i, (w, b) in enumerate(self.layers):
            x = x @ w + b
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        return x

    def predict_probs(self, hands: Sequence[Hand]) -> np.ndarray:
        if not hands:
            return np.zeros((0, len(self.classes)))
        return softmax(self.logits(self.inputs(hands)), self.temperature)


def _read_dense_layers(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(kernel (in, out), bias (out,)), ...] in network order from a Keras 2/3 .h5 file of Dense layers."""
    import json

    import h5py

    try:
        with h5py.File(path, "r") as f:
            config = json.loads(f.attrs["model_config"])
            names = [layer["config"]["name"] for layer in config["config"]["layers"]
                     if layer["class_name"] == "Dense"]
            layers = []
            for name in names:
                found: dict[str, np.ndarray] = {}
                f["model_weights"][name].visititems(
                    lambda n, o: found.__setitem__(n.split("/")[-1].split(":")[0], np.asarray(o, np.float32))
                    if isinstance(o, h5py.Dataset) else None)
                layers.append((found["kernel"], found["bias"]))
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path} is not a readable Keras dense model ({e}); "
                         f"run `livelearner models fetch {STORE_NAME}`") from e
    if not layers:
        raise ValueError(f"{path} has no Dense layers: not the asl-alpnum-recognizer MLP")
    return layers


class BundleSignClassifier:
    """A team-trained "landmarks" bundle (models.bundle) applied to hands."""

    def __init__(self, bundle: Bundle) -> None:
        if bundle.task != "landmarks":
            raise ValueError(f"this is a {bundle.task!r} model; the sign pipeline needs a 'landmarks' model "
                             "(train one with `livelearner train` on captured hand samples)")
        self.bundle = bundle
        self.classes = tuple(bundle.classes)
        self.policy: RoutingPolicy = bundle.policy
        self.conformal_qhat: float | None = bundle.conformal_qhat
        self.coverage: float | None = bundle.coverage
        self.calibrated: bool = bool(bundle.calibrated)
        self.calibration: str | None = bundle.calibration  # what the Predictions say they were calibrated on
        inp = dict(bundle.spec.get("input") or {})
        self.features = inp.get("features", "hand_invariant_v1")
        if self.features not in FEATURE_DIMS:
            raise ValueError(f"{bundle.root}: unknown landmark features {self.features!r}; "
                             f"this version computes {', '.join(FEATURE_DIMS)}")
        dim = inp.get("dim")
        if dim is not None and int(dim) != FEATURE_DIMS[self.features]:
            raise ValueError(f"{bundle.root}: the model takes {dim} numbers per hand, {self.features} hands give "
                             f"{FEATURE_DIMS[self.features]}")

    def inputs(self, hands: Sequence[Hand]) -> np.ndarray:
        """(N, D) features of the kind the bundle was trained on; ValueError for a degenerate hand."""
        return np.stack([hand_features(h, self.features) for h in hands])

    def predict_probs(self, hands: Sequence[Hand]) -> np.ndarray:
        if not hands:
            return np.zeros((0, len(self.classes)))
        return self.bundle.predict_probs(self.inputs(hands))


def load_sign_classifier(name_or_path: str | Path | None = None, *, trust_pickle: bool = False) -> SignClassifier:
    """None: the project's own shipped landmarks model (the packaged MLP if this checkout lacks it);
    "packaged": the packaged MLP (weak on new people, fetched from the model store on first use);
    otherwise a landmarks bundle folder (a format-1 pickle bundle only with `trust_pickle`).

    Why the shipped model is the default: on 1,559 photos of six other signers the packaged MLP reads
    0.587 [0.559, 0.615] of found hands with ECE 0.356 (overconfident); the shipped MLP is trained on 58
    people and measured on people held out of its training by person folds (its card and
    `python -m bench.signs` give the figures per new person). See models/weights/sign_landmarks_mlp/card.md.
    """
    if name_or_path is None:
        from models.shipped import shipped_bundle

        shipped = shipped_bundle("sign")
        if shipped is not None:
            return BundleSignClassifier(load_bundle(shipped))
        name_or_path = "packaged"
    if name_or_path in ("packaged", STORE_NAME):
        from models.store import ensure

        return PackagedLetterMLP(ensure(STORE_NAME))
    return BundleSignClassifier(load_bundle(name_or_path, trust_pickle=trust_pickle))
