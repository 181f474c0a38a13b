import numpy as np
import pytest

from mujo.data.text import (PHRASES, CaptionSampler, TextEmbedder, caption_choice, make_label_text,
                            normalize_captions, normalize_label)


@pytest.mark.parametrize("raw, expected", [
    ("L arm curl x12", "left arm curl"),
    ("Deep Squats with Dumbbells!", "deep squats dumbbells"),
    ("03:15 Alt DB Curls - round 2", "alternating dumbbell curls"),
    ("r arm row 21 reps", "right arm row"),
    ("Push-ups (30 sec)", "push ups"),
    ("JUMPING JACKS", "jumping jacks"),
    ("Three sets of ten push ups", "push ups"),  # number words
    ("10kg DB bench press", "dumbbell bench press"),  # numbers with units
    ("ER with band 2x15", "external rotation band"),  # rehabilitation abbreviations
    ("SA lat raise", "single arm lateral raise"),
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


def test_every_wide_activity_has_phrasings():
    from mujo.data.activities import WIDE_ACTIVITIES

    assert set(PHRASES) == set(WIDE_ACTIVITIES)


def test_caption_sampler_draws_one_caption_per_epoch_deterministically():
    captions = [["A man walks forward slowly.", "a person walking", "someone takes 4 steps"], "Badminton smash x3",
                ["the person jogs in place", "jogging"]]
    keys = ["m1-w0", "m2-w0", "m3-w0"]
    sampler = CaptionSampler(captions, keys, seed=7)
    assert sampler.counts.tolist() == [3, 1, 2]
    assert sampler.captions[0] == ["man walks forward slowly", "person walking", "someone takes steps"]
    assert sampler.texts(0) == CaptionSampler(captions, keys, seed=7).texts(0)  # deterministic per seed
    draws = [sampler.choices(e) for e in range(40)]
    assert all(d[1] == 0 for d in draws)  # one caption: always it
    assert {d[0] for d in draws} == {0, 1, 2} and {d[2] for d in draws} == {0, 1}  # every caption gets its turn
    assert any(sampler.texts(e) != sampler.texts(0) for e in range(1, 5))  # epochs differ
    assert [caption_choice(3, 7, e, "m1-w0") for e in range(5)] == [d[0] for d in draws[:5]]
    assert normalize_captions(None, fallback="Walk!") == ["walk"] and normalize_captions(["", "a", "x 3"]) == []
    with pytest.raises(ValueError, match="no caption"):
        CaptionSampler([["the", "10"]], ["bad-clip"])
    with pytest.raises(ValueError, match="one list per window"):
        CaptionSampler([["walk"]], ["a", "b"])


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    return TextEmbedder()  # loaded once for the module's tests


def test_caption_sampler_embeds_each_text_once_and_serves_epochs(embedder):
    emb = embedder
    sampler = CaptionSampler([["walking", "a person walks"], ["badminton smash"]] * 2, ["a", "b", "c", "d"], emb)
    for epoch in range(3):
        got = sampler.embeddings(epoch)
        assert got.shape == (4, 384) and got.dtype == np.float32
        np.testing.assert_allclose(got, emb(sampler.texts(epoch)), atol=1e-6)
    with pytest.raises(RuntimeError, match="without an embedder"):
        CaptionSampler(["walk"], ["a"]).embeddings(0)


def test_offline_embedder_is_semantic(embedder):
    emb = embedder
    x = emb(["squats", "deep squats dumbbells", "left arm curl", "squats"])
    assert x.shape == (4, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(x[0], x[3])
    assert x[0] @ x[1] > x[0] @ x[2] + 0.2


def test_embedder_matches_sentence_transformers(embedder):
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
    emb = embedder
    np.testing.assert_allclose(emb.model.encode(texts), want, atol=1e-6)
    np.testing.assert_allclose(np.concatenate([emb([t]) for t in texts]), want, atol=1e-6)
