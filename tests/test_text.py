import numpy as np
import pytest

from mujo.data.text import PHRASES, TextEmbedder, make_label_text, normalize_label


@pytest.mark.parametrize("raw, expected", [
    ("L arm curl x12", "left arm curl"),
    ("Deep Squats with Dumbbells!", "deep squats dumbbells"),
    ("03:15 Alt DB Curls - round 2", "alternating dumbbell curls"),
    ("r arm row 21 reps", "right arm row"),
    ("Push-ups (30 sec)", "push ups"),
    ("JUMPING JACKS", "jumping jacks"),
])
def test_normalize_label(raw, expected):
    assert normalize_label(raw) == expected


def test_generated_labels_vary_and_normalise_to_words():
    rng = np.random.default_rng(0)
    for activity in PHRASES:
        texts = {make_label_text(activity, rng) for _ in range(20)}
        assert len(texts) > 3
        for t in texts:
            norm = normalize_label(t)
            assert norm and all(w.isalpha() for w in norm.split()), (t, norm)


def test_offline_embedder_is_semantic():
    emb = TextEmbedder()
    x = emb(["squats", "deep squats dumbbells", "left arm curl", "squats"])
    assert x.shape == (4, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(x[0], x[3])
    assert x[0] @ x[1] > x[0] @ x[2] + 0.2


def test_embedder_matches_sentence_transformers():
    """The plain-torch encoder gives what sentence-transformers gives for the same model files (batched with
    padding, and one text at a time as the preprocessing actors call it), to float32 rounding."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from mujo.data.text import model_path

    texts = ["deep squats with dumbbells", "left arm curl", "push ups", "x",
             "walking " * 300]  # longer than the 256-token limit: truncated the same way
    reference = SentenceTransformer(model_path(), device="cpu")
    want = reference.encode(texts, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    emb = TextEmbedder()
    np.testing.assert_allclose(emb.model.encode(texts), want, atol=1e-6)
    np.testing.assert_allclose(np.concatenate([emb([t]) for t in texts]), want, atol=1e-6)
