"""all-MiniLM-L6-v2 sentence embeddings from the store, offline."""
from __future__ import annotations

import numpy as np
import pytest

from models.embeddings import EMBEDDING_DIM, EmbedderSettings, TextEmbedder, load_text_embedder


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    return load_text_embedder(EmbedderSettings(device="cpu"))


def test_shape_dtype_and_unit_length(embedder):
    vectors = embedder.encode(["The lecture starts at nine.", "Bring your laptop", ""])
    assert vectors.shape == (3, EMBEDDING_DIM) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.encode([]).shape == (0, EMBEDDING_DIM)


def test_similar_sentences_are_closer_than_unrelated_ones(embedder):
    a, b, c, d = embedder.encode([
        "The cat is sleeping on the sofa.",
        "A kitten naps on the couch.",
        "Quarterly revenue rose by eight percent.",
        "The company's sales grew this quarter.",
    ])
    assert a @ b > 0.5 and c @ d > 0.5
    assert a @ b > a @ c + 0.3 and c @ d > b @ d + 0.3


def test_batches_give_the_same_vectors_as_one_at_a_time(embedder):
    texts = [f"sentence number {i} about {topic}" for i, topic in enumerate(["dogs", "rain", "maths", "music"])]
    together = embedder.encode(texts)
    small = load_text_embedder(EmbedderSettings(device="cpu", batch_size=1))
    assert np.allclose(together, small.encode(texts), atol=1e-5)


def test_a_folder_that_is_no_model_gets_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not a sentence-transformers model folder"):
        TextEmbedder(EmbedderSettings(model_path=tmp_path, device="cpu"))


def test_matches_the_reference_sentence_transformers_output(embedder):
    # First values sentence-transformers gives for this sentence with all-MiniLM-L6-v2 (its documented example).
    reference = [0.0677, 0.0635, 0.0487, 0.0793, 0.0374, 0.0027]
    vector = embedder.encode(["This is an example sentence"])[0]
    assert np.allclose(vector[:6], reference, atol=5e-4)
