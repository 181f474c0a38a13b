"""FLAG3D (Tang et al., CVPR 2023): MoCap 3-D skeletons of 60 fitness activities, pose only.

**The file.** FLAG3D's code README names the annotation file ``flag3d.pkl``; the file users receive is
``flag3d_keypoint.pkl`` (about 1.7 GB). Both names are accepted (``--source`` is the file itself or a folder holding
one of them; option ``file`` forces a name) and the one read is recorded in the report. Its layout is the pyskl
annotation format: ``{'split': {'train': [...], 'val': [...]}, 'annotations': [{'frame_dir':
'S002C002M001P002A001R001', 'keypoint': (M, T, 25, 3) float32, 'label': int, 'total_frames': T, ...}, ...]}``.
``P###`` in ``frame_dir`` is the performer (subject), ``A###`` the activity, ``R###`` the repetition.

**Safe unpickling.** A pickle can run any code while it loads. The file is unpickled by
:class:`RestrictedUnpickler`, whose ``find_class`` resolves only what the published file needs (numpy array, dtype
and scalar reconstruction, ``_codecs.encode`` for the bytes of protocol-2 pickles, plain builtin containers) and
refuses any other global with :class:`UnsafePickleError` naming the file and the global, before anything runs. It
reads from a buffered stream opened on the file (local or ``s3://``, through ``mujo.storage``'s pyarrow filesystem),
so the file's bytes are never held in memory next to the objects built from them.

**Four variants per take.** The official split lists (FLAG3D's ``flag3d_format.py``) describe the 3-D annotations as
``S002 C002 M001-004 P... A001-060 R001-003`` (train 7 performers x 60 x 3 x 4 = 5040, val 3 x 60 x 3 x 4 = 2160):
every MoCap take (performer, activity, repetition) appears four times, ``M001``..``M004``. What ``M`` stands for is
not documented; four variants of one (P, A, R) are one performance, not four. By default (option ``variants:
first``) one clip per take is emitted (the lowest ``M``) and the others are counted (``variant_copies_not_emitted``);
whether they are exact copies of it is measured and reported (``report.details.variants``). ``variants: all`` emits
every variant, each marked with its ``take`` and ``variant`` (clip ids keep the ``M###``). The split is by
performer, so the variants of one take never straddle splits either way.

**The first frame.** The published sample's first frame sits up to 0.43 m from the second while later frames move less
than 2 mm apart (its SpineBase is exactly the origin: a reference frame, not motion). Such a frame would put an
acceleration spike into the virtual IMU preprocessing derives from the pose, so a first frame that jumps more than
10x the take's median frame-to-frame step (and more than 5 cm) is dropped and counted (``first_frame_dropped``;
option ``first_frame``: ``auto`` | ``keep`` | ``drop``).

**Joints.** The 25 joints are the NTU RGB+D / Kinect v2 layout; they are mapped onto the platform's 17 Human3.6M
joints with :data:`NTU_TO_H36M` (pelvis = SpineBase, spine = SpineMid, thorax = SpineShoulder, neck/nose ~ Neck,
head = Head, limbs joint by joint; hands, hand tips, thumbs and feet are dropped). The published sample is in metres
with z up (SpineMid 0.31 m and Neck 0.62 m above SpineBase), which are the option defaults; the unit guess and the
trunk length are checked per clip. No IMU: preprocessing derives a virtual wrist IMU from the pose. The frame rate is
not stated in the annotation file (option ``pose_hz``, see the card).

The official split has ``train`` (performers 2-4, 6-9) and ``val`` (1, 5, 10), which FLAG3D's own benchmark code
evaluates on: ``val`` becomes the platform's ``test`` (option ``val_as``).
"""

from __future__ import annotations

import builtins
import codecs
import io
import pickle
import re
from typing import Any, BinaryIO, Iterator

import numpy as np

from mujo import storage
from mujo.adapters.cards import raw_key
from mujo.adapters.common import DatasetAdapter, basename, detect_pose_units, normalize_pose, relpath
from mujo.data.clips import RawClip

NTU_JOINTS = (
    "SpineBase", "SpineMid", "Neck", "Head", "ShoulderLeft", "ElbowLeft", "WristLeft", "HandLeft", "ShoulderRight",
    "ElbowRight", "WristRight", "HandRight", "HipLeft", "KneeLeft", "AnkleLeft", "FootLeft", "HipRight", "KneeRight",
    "AnkleRight", "FootRight", "SpineShoulder", "HandTipLeft", "ThumbLeft", "HandTipRight", "ThumbRight",
)
NTU_TO_H36M = (0, 16, 17, 18, 12, 13, 14, 1, 20, 2, 3, 4, 5, 6, 8, 9, 10)
"""For each Human3.6M joint (``mujo.data.skeleton.JOINTS`` order) the NTU RGB+D joint it is taken from."""

_FRAME_DIR = re.compile(r"P(\d+)")
_VARIANT = re.compile(r"M(\d+)")
ANNOTATION_FILES = ("flag3d_keypoint.pkl", "flag3d.pkl")
"""The annotation file's names, in order of preference: the file the download holds, the name in FLAG3D's README."""


def ntu_to_h36m(keypoints: np.ndarray) -> np.ndarray:
    """``(T, 25, 3)`` NTU RGB+D joints -> ``(T, 17, 3)`` Human3.6M joints (see :data:`NTU_TO_H36M`)."""
    kp = np.asarray(keypoints)
    if kp.ndim != 3 or kp.shape[1:] != (25, 3):
        raise ValueError(f"expected (T, 25, 3) NTU RGB+D keypoints, got {kp.shape}")
    return kp[:, list(NTU_TO_H36M)]


# --------------------------------------------------------------------------------------------------------------------
# Reading the pickle safely
# --------------------------------------------------------------------------------------------------------------------

class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle asked for a global the restricted unpickler does not allow; nothing from it was run."""


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> object for every global a published FLAG3D annotation file may reference.

    The numpy reconstruction functions are taken from what this numpy's own arrays reduce to, so files written by
    numpy 1.x (``numpy.core...``) and 2.x (``numpy._core...``) both resolve without importing a deprecated module.
    """
    reconstruct = np.zeros(1).__reduce__()[0]  # numpy's multiarray._reconstruct
    scalar = np.float32(0).__reduce__()[0]  # multiarray.scalar (numpy scalars such as np.int64 labels)
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # numeric._frombuffer (protocol-5 arrays)
    table: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                         ("_codecs", "encode"): codecs.encode}  # bytes in protocol 0-2 pickles
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        table[(f"{core}.multiarray", "scalar")] = scalar
        table[(f"{core}.numeric", "_frombuffer")] = frombuffer
    for module in ("builtins", "__builtin__"):
        for name in ("dict", "list", "tuple", "set", "frozenset", "bytearray", "bytes", "str", "int", "float",
                     "complex", "bool"):
            table[(module, name)] = getattr(builtins, name)
    return table


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays and plain containers only.

    Every global a pickle references goes through :meth:`find_class`; anything not in :func:`_allowed_globals`
    (``os.system``, ``builtins.eval``, ``subprocess.Popen``, any class) raises :class:`UnsafePickleError` before it
    could be called, naming the file and the global.
    """

    _ALLOWED: dict[tuple[str, str], Any] | None = None

    def __init__(self, file: BinaryIO, where: str) -> None:
        super().__init__(file)
        self.where = where
        if RestrictedUnpickler._ALLOWED is None:
            RestrictedUnpickler._ALLOWED = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        found = (self._ALLOWED or {}).get((module, name))
        if found is None:
            raise UnsafePickleError(
                f"{self.where}: refused to unpickle the global '{module}.{name}': a FLAG3D annotation file holds only "
                "numpy arrays and plain containers, and a pickle that asks for anything else could run code. Get "
                "the file again from FLAG3D's authors (or check where this one came from)")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.where}: refused a persistent id in the pickle (not part of the published file)")


class _ArrowRaw(io.RawIOBase):
    """A pyarrow input stream as a raw binary stream, so :class:`io.BufferedReader` can give pickle ``readline``."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._native.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._native.close()
        super().close()


def load_annotation_file(uri: str) -> Any:
    """Unpickle a FLAG3D annotation file (local or ``s3://``) with :class:`RestrictedUnpickler`, streaming it from
    storage (1 MiB buffer): peak memory is about the unpickled objects, not the file twice."""
    fs, path = storage.filesystem(uri)
    try:
        native = fs.open_input_stream(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"flag3d: {storage.describe(uri)} does not exist") from None
    except OSError as exc:
        raise storage.StorageError(f"cannot open {storage.describe(uri)}: {exc}") from exc
    with io.BufferedReader(_ArrowRaw(native), buffer_size=1 << 20) as stream:
        try:
            return RestrictedUnpickler(stream, storage.describe(uri)).load()  # trusted: the restricted unpickler
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
            raise ValueError(f"{storage.describe(uri)}: not a readable pickle ({type(exc).__name__}: {exc}); was the "
                             "download truncated?") from None


def find_annotation_file(source: str, name: str = "auto") -> tuple[str, str]:
    """The annotation file to read and why: ``source`` itself when it is a ``.pkl``; else ``source/<name>``; else
    (``name='auto'``) the first of :data:`ANNOTATION_FILES` in ``source``, or the only one found below it."""
    if source.endswith(".pkl"):
        return source, "given as --source"
    if name != "auto":
        uri = storage.join(source, name)
        if not storage.exists(uri):
            raise FileNotFoundError(f"flag3d: {storage.describe(uri)} does not exist (option file={name!r})")
        return uri, f"option file={name}"
    present = [storage.join(source, n) for n in ANNOTATION_FILES if storage.exists(storage.join(source, n))]
    if present:
        why = f"{basename(present[0])} in the source folder"
        if len(present) > 1:
            why += f" (also there: {basename(present[1])}; option file picks the other)"
        return present[0], why
    below = [u for u in storage.list_files(source, ".pkl") if basename(u) in ANNOTATION_FILES]
    if len(below) == 1:
        return below[0], f"the only {basename(below[0])} below the source folder"
    if below:
        raise ValueError(f"flag3d: several annotation files under {storage.describe(source)}: "
                         f"{[relpath(u, source) for u in below]}; point --source at the one to read")
    raise FileNotFoundError(f"flag3d: no {' or '.join(ANNOTATION_FILES)} under {storage.describe(source)} (the "
                            "download holds flag3d_keypoint.pkl; point --source at it or at its folder)")


# --------------------------------------------------------------------------------------------------------------------
# Takes, variants and the first frame
# --------------------------------------------------------------------------------------------------------------------

def take_of(frame_dir: str) -> tuple[str, int | None]:
    """``'S002C002M003P002A001R001'`` -> (``'S002C002P002A001R001'``, 3): the take without its ``M###`` variant."""
    m = _VARIANT.search(frame_dir)
    if m is None:
        return frame_dir, None
    return frame_dir[: m.start()] + frame_dir[m.end():], int(m.group(1))


def first_frame_jump(kp: np.ndarray) -> tuple[float, float]:
    """(largest joint displacement from frame 0 to frame 1, median over the later frames of the largest joint
    displacement from one frame to the next), in the keypoints' units; ``kp`` is ``(T, J, 3)``."""
    if len(kp) < 3:
        return 0.0, 0.0
    with np.errstate(invalid="ignore"):
        step = np.linalg.norm(np.diff(kp, axis=0), axis=-1)  # (T-1, J)
        step = np.where(np.isfinite(step), step, -1.0).max(axis=1)  # a frame with NaN joints: its finite ones
    later = step[1:][step[1:] >= 0]
    return max(float(step[0]), 0.0), float(np.median(later)) if len(later) else 0.0


class Flag3DAdapter(DatasetAdapter):
    """Reads ``flag3d_keypoint.pkl`` or ``flag3d.pkl``; see the module docstring and ``datasets/flag3d.yaml``."""

    name = "flag3d"
    OPTIONS: dict[str, Any] = {
        "file": "auto",  # auto: flag3d_keypoint.pkl (the download) or flag3d.pkl (the README's name); or a name
        "pose_hz": 30.0,  # not stated in the annotation file: see the card's 'unconfirmed'
        "pose_units": "m",  # m | cm | mm | auto
        "pose_up": "+z",  # the published sample is z-up; 'auto' guesses per clip (unsafe for lying exercises)
        "val_as": "test",  # the official 'val' list becomes this platform split
        "person": 0,  # which of the M skeletons
        "min_seconds": 2.0,
        "variants": "first",  # first: one clip per take (P, A, R), the other M### variants counted | all
        "first_frame": "auto",  # auto: drop a first frame that jumps (> 10x the median step and > 5 cm) | keep | drop
    }

    def read(self, source_dir: str, **options: Any) -> Iterator[RawClip]:
        """One clip per take (or per annotation with ``variants=all``) of the annotation file at or under
        ``source_dir``."""
        opts = self.resolve_options(options)
        self.report.clear()
        if opts["val_as"] not in ("train", "val", "test"):
            raise ValueError(f"flag3d: val_as must be train, val or test, not {opts['val_as']!r}")
        if opts["variants"] not in ("first", "all"):
            raise ValueError(f"flag3d: variants must be 'first' or 'all', not {opts['variants']!r}")
        if opts["first_frame"] not in ("auto", "keep", "drop"):
            raise ValueError(f"flag3d: first_frame must be 'auto', 'keep' or 'drop', not {opts['first_frame']!r}")
        self._lookup = self.card.lookup()
        uri, why = find_annotation_file(source_dir, str(opts["file"]))
        self.report.details["file"] = {"read": basename(uri), "why": why}
        self.report.note(f"read {storage.describe(uri)} ({why})")
        data = load_annotation_file(uri)
        if not isinstance(data, dict) or "annotations" not in data or "split" not in data:
            raise ValueError(f"{storage.describe(uri)}: expected a dict with 'split' and 'annotations' (pyskl format)")
        official = {"train": "train", "val": opts["val_as"], "test": "test"}
        split_of: dict[str, str] = {}
        for name, ids in data["split"].items():
            if name not in official:
                self.report.note(f"official split list {name!r} ignored (not train/val/test)")
                continue
            for fd in ids:
                split_of[str(fd)] = official[name]
        anns: list[Any] = data["annotations"]
        del data
        takes: dict[str, list[tuple[int, int]]] = {}  # take -> [(variant number, annotation index)], first seen order
        for i, ann in enumerate(anns):
            fd = str(ann.get("frame_dir") or "") if isinstance(ann, dict) else ""
            take, variant = take_of(fd) if fd else (f"<annotation {i}>", None)  # no frame_dir: a take of its own
            takes.setdefault(take, []).append((variant if variant is not None else 0, i))
        stats = {"takes": len(takes), "annotations": len(anns), "variants_per_take": {}, "identical_to_first": 0,
                 "differing_from_first": 0, "max_abs_diff": 0.0, "mode": opts["variants"]}
        jumps = {"dropped": 0, "largest_dropped_jump": 0.0, "largest_kept_first_step": 0.0}
        for take, members in takes.items():
            members.sort()
            n = str(len(members))
            stats["variants_per_take"][n] = stats["variants_per_take"].get(n, 0) + 1
            reference = anns[members[0][1]]
            for rank, (variant, index) in enumerate(members):
                ann = anns[index]
                if rank > 0:
                    same = _same_keypoints(reference, ann)
                    stats["identical_to_first" if same[0] else "differing_from_first"] += 1
                    stats["max_abs_diff"] = max(stats["max_abs_diff"], same[1])
                    if opts["variants"] == "first":
                        self.report.counts["variant_copies_not_emitted"] += 1
                        continue
                clip = self._clip(ann, take, rank, split_of, opts, uri, jumps)
                if clip is not None:
                    yield clip
            for _, index in members:
                anns[index] = None  # release the take's arrays as we go
        stats["max_abs_diff"] = round(stats["max_abs_diff"], 6)
        self.report.details["variants"] = stats
        self.report.details["first_frame"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in jumps.items()}
        if opts["variants"] == "first" and stats["annotations"] > stats["takes"]:
            self.report.note(f"{stats['annotations']} annotations are {stats['takes']} takes (performer, activity, "
                             f"repetition) with M### variants: one clip per take (variants=first); "
                             f"{stats['identical_to_first']} variants are exact copies of their take's first, "
                             f"{stats['differing_from_first']} differ (largest |difference| {stats['max_abs_diff']})")

    # ------------------------------------------------------------------------------------------------------------

    def _clip(self, ann: Any, take: str, rank: int, split_of: dict[str, str], opts: dict[str, Any], uri: str,
              jumps: dict[str, Any]) -> RawClip | None:
        if not isinstance(ann, dict):
            self.report.skip(f"annotation of take {take}", f"not a dict but {type(ann).__name__}")
            return None
        fd = str(ann.get("frame_dir", ""))
        split = split_of.get(fd)
        if split is None:
            self.report.skip(fd or "<no frame_dir>", "not in any official split list")
            return None
        spec = self._lookup.get(raw_key(ann.get("label")))
        if spec is None:
            self.report.skip(fd, f"label {ann.get('label')!r} is not in the card's label map")
            return None
        kp = np.asarray(ann.get("keypoint"), dtype=np.float64)
        if kp.ndim != 4 or kp.shape[2:] != (25, 3):
            raise ValueError(f"{storage.describe(uri)}: {fd}: keypoint must be (M, T, 25, 3), got {kp.shape}")
        person = int(opts["person"])
        if person >= kp.shape[0]:
            self.report.skip(fd, f"has {kp.shape[0]} skeleton(s), option person={person}")
            return None
        skeleton = kp[person]
        hz = float(opts["pose_hz"])
        first, typical = first_frame_jump(skeleton)
        drop = opts["first_frame"] == "drop" or (opts["first_frame"] == "auto" and first > max(10.0 * typical, 0.05))
        if drop and len(skeleton) > 1:
            skeleton = skeleton[1:]
            jumps["dropped"] += 1
            jumps["largest_dropped_jump"] = max(jumps["largest_dropped_jump"], first)
            self.report.counts["first_frame_dropped"] += 1
        else:
            jumps["largest_kept_first_step"] = max(jumps["largest_kept_first_step"], first)
        pose = ntu_to_h36m(skeleton)
        ok = np.isfinite(pose).all(axis=(1, 2))
        if not ok.all():
            self.report.note(f"{fd}: {int((~ok).sum())} frames with NaN dropped")
            pose = pose[ok]
        if len(pose) / hz + 1e-9 < opts["min_seconds"]:
            self.report.skip(fd, f"{len(pose) / hz:.2f} s, shorter than min_seconds={opts['min_seconds']}")
            return None
        if opts["pose_units"] != "auto" and detect_pose_units(pose) != opts["pose_units"]:
            self.report.note(f"{fd}: the trunk length suggests {detect_pose_units(pose)}, the option says "
                             f"{opts['pose_units']}")
        pose32, conv = normalize_pose(pose, units=opts["pose_units"], up=opts["pose_up"], lr="h36m")
        m = _FRAME_DIR.search(fd)
        performer = f"p{int(m.group(1)):03d}" if m else fd
        variant = take_of(fd)[1]
        return RawClip(
            clip_id=f"flag3d-{fd}", subject=f"flag3d-{performer}", dataset=self.dataset_name, split=split,
            label_text=spec.label_text, activity=spec.name, pose=pose32, pose_hz=hz,
            extra={"frame_dir": fd, "label": _plain(ann.get("label")), "pose_convention": conv.as_dict(),
                   "take": take, "variant": variant, "variant_rank": rank, "first_frame_dropped": bool(drop)},
        )


def _same_keypoints(a: Any, b: Any) -> tuple[bool, float]:
    """Whether two annotations carry the same keypoints, and their largest absolute difference (same shapes)."""
    ka = np.asarray(a.get("keypoint") if isinstance(a, dict) else None)
    kb = np.asarray(b.get("keypoint") if isinstance(b, dict) else None)
    if ka.shape != kb.shape or ka.dtype == object or kb.dtype == object:
        return False, 0.0  # counted as differing; no element-wise difference to report
    if ka.size == 0:
        return True, 0.0
    diff = float(np.nanmax(np.abs(ka.astype(np.float64) - kb.astype(np.float64))))
    return bool(np.array_equal(ka, kb, equal_nan=True)), diff


def _plain(value: Any) -> Any:
    """A numpy scalar label as a plain Python value (for the clip's extra)."""
    return value.item() if isinstance(value, np.generic) else value
