"""fastai DataBlocks and learners for the four kinds of data a team records.

    image      transfer learning: ImageNet mobilenet_v2 (models.backbone, packaged weights), squash-resized
               to `image_size_px`, flip/rotate/zoom/lighting augmentation, ImageNet normalisation
    landmarks  a small MLP on the flat landmark vector (normalisation inside the model): trains in seconds
    text       the same MLP on MiniLM sentence embeddings (models.embeddings, (N, 384) L2-normalised);
               with no training data, `zero_shot_embeddings` embeds one description per class instead
    tabular    fastai's tabular learner on questionnaire answers (numbers -> normalised, words -> embeddings)

`TaskData` is what the trainer works on: items with their labels, persons, sessions and capture times,
taken from a `SampleStore`. `featurize` turns items into what the learner reads (embedding texts
once per run), and `build_learner` makes a fastai Learner for one split.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from models.architectures import VectorMLP
from train.samples import SampleStore, StoreError

TEXT_EMBEDDING_DIM = 384  # MiniLM-L6-v2
ZERO_SHOT_TEMPERATURE = 0.05  # cosine similarities are close together; divide by this before softmax


@dataclass(frozen=True)
class LearnerSettings:
    image_size_px: int = 128  # square side images are squashed to (a third of the compute of 224 on a CPU)
    batch_size: int = 16  # images per batch (vectors use 4x this)
    augment: bool = True  # image augmentation: flips, small rotations, zoom, lighting
    flip: bool = True  # horizontal flips (turn off for hand signs where handedness matters)
    hidden: tuple[int, ...] = (128,)  # hidden units of the landmark/text MLP
    dropout: float = 0.1  # MLP dropout
    tabular_layers: tuple[int, ...] = (64, 32)  # fastai tabular_learner layers
    pretrained: bool = True  # ImageNet weights for the image backbone (False only for quick experiments)

    def __post_init__(self) -> None:
        from train.fit import check_range

        check_range("image size (pixels)", self.image_size_px, 16, 1024)
        check_range("batch size", self.batch_size, 1, 1024)
        check_range("dropout", self.dropout, 0, 0.95)
        for n in (*self.hidden, *self.tabular_layers):
            check_range("hidden layer size", n, 1, 4096)


@dataclass
class TaskData:
    """Labelled examples of one task, in capture order."""

    task: str  # "image" | "landmarks" | "text" | "tabular"
    items: list[Any]  # image: Path; landmarks: (D,) array; text: str; tabular: dict
    labels: list[str]
    persons: list[str]
    sessions: list[str]
    times: np.ndarray  # (N,) capture time, seconds
    ids: list[str]

    @classmethod
    def from_store(cls, store: SampleStore, task: str, exclude: Sequence[str] = ()) -> "TaskData":
        samples = store.samples(task, exclude=exclude)
        root = store.root.resolve()
        outside = [s for s in samples if s.path is not None and not s.path.resolve().is_relative_to(root)]
        if outside:  # a hand-edited or hostile store: never read files beyond its folder
            names = ", ".join(f"{s.id} ({s.path.name})" for s in outside[:3])
            raise StoreError(f"{len(outside)} sample(s) name files outside the sample folder {store.root}: {names}. "
                             "A store reads only its own files: remove them (Train tab, or "
                             "SampleStore.remove(id, by=...)) and record them again")
        items = [s.path if s.path is not None else s.payload for s in samples]
        if task == "landmarks":
            dims = {len(v) for v in items}
            if len(dims) > 1:
                raise ValueError(f"landmark samples have different lengths {sorted(dims)}; "
                                 "remove the odd ones (store.remove(id)) or record them again")
            items = [np.asarray(v, dtype=np.float32) for v in items]
        return cls(task, items, [s.label for s in samples], [s.person for s in samples],
                   [s.session for s in samples], np.array([s.captured_at for s in samples], dtype=float),
                   [s.id for s in samples])

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    def subset(self, idx: Sequence[int]) -> "TaskData":
        idx = list(int(i) for i in idx)
        return TaskData(self.task, [self.items[i] for i in idx], [self.labels[i] for i in idx],
                        [self.persons[i] for i in idx], [self.sessions[i] for i in idx], self.times[idx],
                        [self.ids[i] for i in idx])


def vector_to_tensor(x: Any) -> torch.Tensor:
    """Type transform for vector items (module-level so exported learners pickle)."""
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


def featurize(data: TaskData) -> Any:
    """What the learner reads: image paths, an (N, D) float32 array, or a DataFrame of answers."""
    if data.task == "image":
        return [str(p) for p in data.items]
    if data.task == "landmarks":
        return np.stack(data.items).astype(np.float32)  # (N, D)
    if data.task == "text":
        return embed_texts(list(data.items))  # (N, 384)
    if data.task == "tabular":
        return answers_frame(data.items)
    raise ValueError(f"unknown task {data.task!r}; use image, landmarks, text or tabular")


@lru_cache(maxsize=1)
def _embedder():
    from models.embeddings import load_text_embedder

    return load_text_embedder()  # loaded on first use, then shared (MiniLM takes a second or two to load)


def embed_texts(texts: list[str]) -> np.ndarray:
    return np.asarray(_embedder().encode(list(texts)), dtype=np.float32)  # (N, 384)


def zero_shot_embeddings(descriptions: dict[str, str]) -> tuple[list[str], np.ndarray]:
    """Classes and (C, 384) embeddings of one description per class, for a zero-shot text bundle."""
    if len(descriptions) < 2:
        raise ValueError("zero-shot classification needs a description for each of at least 2 labels")
    classes = list(descriptions)
    return classes, embed_texts([descriptions[c] for c in classes])


def answers_frame(items: Sequence[dict[str, Any]]):
    """Questionnaire answers -> DataFrame: numeric questions as floats, the others as strings."""
    import pandas as pd

    df = pd.DataFrame(list(items))
    for col in df.columns:
        num = pd.to_numeric(df[col], errors="coerce")
        if num.notna().mean() >= 0.9:  # mostly numbers: a scale question
            df[col] = num
        else:
            df[col] = df[col].astype(str)
    return df


def _frame(x: Any, labels: Sequence[str], train_idx: np.ndarray, valid_idx: np.ndarray):
    import pandas as pd

    idx = np.concatenate([train_idx, valid_idx])
    is_valid = np.r_[np.zeros(len(train_idx), bool), np.ones(len(valid_idx), bool)]
    y = np.asarray(labels)[idx]
    if isinstance(x, pd.DataFrame):
        df = x.iloc[idx].reset_index(drop=True).copy()
    elif isinstance(x, np.ndarray):
        df = pd.DataFrame({"x": list(x[idx])})
    else:
        df = pd.DataFrame({"x": [x[i] for i in idx]})
    df["label"], df["is_valid"] = y, is_valid
    return df


def build_learner(task: str, x: Any, labels: Sequence[str], train_idx: np.ndarray, valid_idx: np.ndarray,
                  settings: LearnerSettings = LearnerSettings(), classes: Sequence[str] | None = None,
                  cbs: Sequence[Any] = ()):
    """A fastai Learner for one split. x: output of `featurize`. Returns (learner, backend, input_spec)."""
    from fastai.data.block import CategoryBlock, DataBlock, TransformBlock
    from fastai.data.transforms import ColReader, ColSplitter
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy

    df = _frame(x, labels, np.asarray(train_idx), np.asarray(valid_idx))
    vocab = list(classes) if classes is not None else sorted(set(labels))
    ylock = CategoryBlock(vocab=vocab)
    if task == "image":
        from fastai.vision.augment import Resize, aug_transforms
        from fastai.vision.core import imagenet_stats
        from fastai.vision.data import ImageBlock
        from fastai.vision.learner import vision_learner
        from fastai.data.transforms import Normalize

        from models.backbone import mobilenet_v2, register_with_fastai

        register_with_fastai()
        size = settings.image_size_px
        batch_tfms = aug_transforms(size=size, do_flip=settings.flip, max_rotate=10.0, max_zoom=1.1,
                                    max_lighting=0.2, max_warp=0.0) if settings.augment else []
        block = DataBlock(blocks=(ImageBlock, ylock), get_x=ColReader("x"), get_y=ColReader("label"),
                          splitter=ColSplitter("is_valid"), item_tfms=Resize(size, method="squash"),
                          batch_tfms=[*batch_tfms, Normalize.from_stats(*imagenet_stats)])
        dls = block.dataloaders(df, bs=settings.batch_size, num_workers=0)
        learn = vision_learner(dls, mobilenet_v2, pretrained=settings.pretrained, metrics=accuracy,
                               cbs=list(cbs))
        spec = {"size": [size, size], "resize": "squash", "mean": list(imagenet_stats[0]),
                "std": list(imagenet_stats[1]), "channels": "RGB", "dtype": "uint8"}
        return learn, "vision", spec
    if task in ("landmarks", "text"):
        from fastai.data.transforms import IndexSplitter, ItemGetter

        # (vector, label) tuples rather than DataFrame rows: item creation is the cost here
        rows = list(zip(df["x"], df["label"]))
        block = DataBlock(blocks=(TransformBlock(type_tfms=vector_to_tensor), ylock), get_x=ItemGetter(0),
                          get_y=ItemGetter(1), splitter=IndexSplitter(np.flatnonzero(df["is_valid"].to_numpy())))
        dls = block.dataloaders(rows, bs=min(4 * settings.batch_size, max(8, len(train_idx) // 4)), num_workers=0)
        xt = np.asarray(x)[np.asarray(train_idx)]  # (n_train, D): statistics from training data only
        model = VectorMLP(xt.mean(axis=0), xt.std(axis=0), len(vocab), settings.hidden, settings.dropout)
        learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy, cbs=list(cbs))
        spec = {"dim": int(xt.shape[1])}
        if task == "text":
            spec["embedder"] = "minilm-l6-v2"
        return learn, "vector", spec
    if task == "tabular":
        from fastai.tabular.all import Categorify, FillMissing, Normalize, TabularDataLoaders, tabular_learner

        feats = [c for c in df.columns if c not in ("label", "is_valid")]
        from pandas.api.types import is_numeric_dtype

        cont = [c for c in feats if is_numeric_dtype(df[c])]
        cat = [c for c in feats if c not in cont]
        valid_rows = list(np.flatnonzero(df["is_valid"].to_numpy()))
        dls = TabularDataLoaders.from_df(df.drop(columns="is_valid"), procs=[Categorify, FillMissing, Normalize],
                                         cat_names=cat, cont_names=cont, y_names="label", y_block=ylock,
                                         valid_idx=valid_rows, bs=min(64, max(8, len(train_idx) // 4)),
                                         num_workers=0)
        learn = tabular_learner(dls, layers=list(settings.tabular_layers), metrics=accuracy, cbs=list(cbs))
        return learn, "tabular", {"questions": feats, "numeric": cont, "categorical": cat}
    raise ValueError(f"unknown task {task!r}; use image, landmarks, text or tabular")


def items_for_prediction(task: str, x: Any, idx: np.ndarray) -> Any:
    """The items `Bundle.predict_probs` takes, for rows `idx` of featurized data `x` (text uses the
    embeddings directly through the vector path, so no re-embedding)."""
    if task == "image":
        return [Path(x[i]) for i in idx]
    if task == "tabular":
        return x.iloc[np.asarray(idx)].reset_index(drop=True)
    return np.asarray(x)[np.asarray(idx)]
