"""Explanations on demand: Grad-CAM over the image for image learners, nearest training examples.

Grad-CAM (Selvaraju et al. 2017): the gradient of the predicted class's logit with respect to the
last convolutional feature map, averaged per channel, weights that map; the ReLU of the weighted
sum, upsampled to the input, shows which pixels pushed the decision. It explains *this* model on
*this* input; a heatmap on the background instead of the face is a warning sign (shortcut learning).

Nearest examples: for models that read embeddings (transcripts through MiniLM), the training
samples closest in cosine similarity, with their labels: "the model says 'question' because these
look alike".
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import threading

import cv2
import numpy as np
import torch
from torch import nn

from models.prediction import Prediction

HEATMAP_ALPHA = 0.45  # weight of the colour map over the photo
_GRADCAM_LOCK = threading.Lock()  # backward passes write .grad on shared weights: one at a time


def last_conv(model: nn.Module) -> nn.Module:
    """The last Conv2d of a network (its output is the feature map Grad-CAM weighs)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no convolution layer: Grad-CAM needs an image CNN.")
    return convs[-1]


def gradcam(model: nn.Module, x: torch.Tensor, class_index: int | None = None,
            layer: nn.Module | None = None) -> tuple[np.ndarray, int]:
    """x: (1, C, H, W) model input -> ((H, W) float32 heatmap in [0, 1], explained class index)."""
    layer = layer if layer is not None else last_conv(model)
    store: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        store["features"] = output

    with _GRADCAM_LOCK:
        handle = layer.register_forward_hook(keep)
        was_training = model.training
        try:
            model.eval()
            with torch.enable_grad():
                inp = x.detach().clone().requires_grad_(True)  # the graph exists even for frozen weights
                logits = model(inp)  # (1, n_classes)
                index = int(logits[0].argmax()) if class_index is None else int(class_index)
                model.zero_grad(set_to_none=True)
                logits[0, index].backward()
        finally:
            handle.remove()
            model.train(was_training)
        features = store["features"].detach()  # (1, K, h, w)
        grads = store["features"].grad  # (1, K, h, w)
    weights = grads.mean(dim=(2, 3), keepdim=True)  # (1, K, 1, 1)
    cam = torch.relu((weights * features).sum(dim=1))[0].float().numpy()  # (h, w)
    cam = cv2.resize(cam, (x.shape[-1], x.shape[-2]), interpolation=cv2.INTER_LINEAR)
    top = float(cam.max())
    return (cam / top if top > 0 else cam).astype(np.float32), index


def overlay(image_rgb: np.ndarray, heat: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Blend a [0, 1] heatmap over the image (or over `box` of it; the box may leave the frame)."""
    out = image_rgb.copy()
    h, w = out.shape[:2]
    x0, y0, x1, y1 = box if box is not None else (0, 0, w, h)
    if x1 <= x0 or y1 <= y0:
        return out
    heat_box = cv2.resize(heat, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    colour = cv2.cvtColor(cv2.applyColorMap((heat_box * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if cx1 <= cx0 or cy1 <= cy0:
        return out
    region = out[cy0:cy1, cx0:cx1].astype(np.float32)
    patch = colour[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0].astype(np.float32)
    out[cy0:cy1, cx0:cx1] = ((1 - HEATMAP_ALPHA) * region + HEATMAP_ALPHA * patch).astype(np.uint8)
    return out


def explain_frame(pipeline: Any, image_rgb: np.ndarray, predictions: Sequence[Prediction]) -> tuple[np.ndarray | None, str]:
    """Grad-CAM of every detection in the last frame, for the pipelines that use an image CNN."""
    from models.faces import FaceBox, emotion_crop_box, emotion_crops

    classifier = getattr(pipeline, "classifier", None)
    if getattr(pipeline, "name", "") == "emotion" and classifier is not None:
        if not predictions:
            return None, "No face in the last frame: nothing to explain."
        grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
        out, lines = image_rgb, []
        settings = pipeline.settings.crop
        from models.emotion import preprocess_faces

        for p in predictions:
            if p.box is None:
                continue
            face = FaceBox(*p.box, score=1.0)
            crop = emotion_crops(grey, [face], settings)  # (1, 64, 64)
            model = _unfused_emotion_model(pipeline.classifier.settings.model_path)
            heat, index = gradcam(model, preprocess_faces(crop), p.top_index)
            out = overlay(out, heat, emotion_crop_box(face, settings))
            lines.append(f"Face #{p.track_id}: where the model looked for **{p.classes[index]}**.")
        return out, "\n\n".join(lines) + "\n\nRed = pixels that raised that class's score (Grad-CAM)."
    head = getattr(pipeline, "classifier", None)
    bundle = getattr(head, "bundle", None)
    model = getattr(bundle, "model", None)
    if model is not None and getattr(bundle, "backend", "") == "vision":
        x = bundle._image_batch([image_rgb])  # (1, 3, S, S) normalised like validation
        heat, index = gradcam(model, x)
        return overlay(image_rgb, heat), f"Where the team model looked for **{bundle.classes[index]}** (Grad-CAM)."
    name = getattr(pipeline, "name", type(pipeline).__name__)
    return None, (f"The {name} model reads hand landmarks, not pixels: Grad-CAM does not apply. "
                  "The drawn skeleton is exactly what it sees.")


@lru_cache(maxsize=2)
def _unfused_emotion_model(path: Any) -> nn.Module:
    """The emotion network with its BatchNorms (the live copy is fused for speed and kept grad-free:
    backpropagating through the fused inference copy is not supported)."""
    from models.emotion import load_mini_xception

    return load_mini_xception(path)


def nearest_texts(embedder: Any, text: str, examples: Sequence[tuple[str, str]], k: int = 3) -> list[tuple[str, str, float]]:
    """[(training text, its label, cosine similarity)] of the k examples closest to `text`."""
    if not text.strip() or not examples:
        return []
    texts = [t for t, _ in examples]
    vectors = embedder.encode([text] + texts)  # (1 + N, 384) L2-normalised
    sims = vectors[1:] @ vectors[0]  # (N,)
    order = np.argsort(-sims)[:k]
    return [(texts[i], examples[i][1], float(sims[i])) for i in order]
