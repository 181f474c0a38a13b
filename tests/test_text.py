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
