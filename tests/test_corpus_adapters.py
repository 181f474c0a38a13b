"""Motion corpora: HumanML3D and KIT-ML in their published layout, and a bring-your-own multimodal corpus card.

Fixtures are written from the published format (HumanML3D's README "Data Structure": ``new_joints/<id>.npy``
(frames, 22, 3) metres y up at 20 fps, ``texts/<id>.txt`` lines ``caption#tokens#start#end``, ``train/val/test.txt``,
``M<id>`` mirrored copies) from the platform's own motion generator, so the expected pose is known exactly. The
writers are shared: ``tests/test_cluster_jobs.py::test_corpus_chain_as_jobs`` runs a HumanML3D-layout corpus and a
BYO corpus through ingest -> preprocess -> pretrain -> evaluate as jobs on a two-node cluster, and
``tests/test_captions.py`` checks their caption alternatives in the shards and the per-epoch draw.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from mujo.adapters import CardError, get_adapter, ingest
from mujo.adapters.corpus import KIT21, SMPL22, keyword_class, prepare_pose, resample_pose
from mujo.adapters.humanml3d import group_captions, parse_caption_line
from mujo.data import imu, synth
from mujo.data import skeleton as sk
from mujo.data.clips import clips_to_table, rows_to_clips
from mujo.adapters.cards import LabelSpec

FIXTURE_HZ = 100.0  # motions are generated at 100 Hz: 20 Hz is every 5th frame, 50 Hz every 2nd


def h36m_motion(activity: str, seconds: float, seed: int) -> np.ndarray:
    """A noise-free (T, 17, 3) z-up motion at :data:`FIXTURE_HZ` from the platform's generator."""
    subject = synth.sample_subject(f"c{seed}", seed=seed)
    return synth.generate_motion(activity, subject, seconds, seed=seed, fs=FIXTURE_HZ, noise_std=0.0)["pose"]


def to_y_up(p: np.ndarray) -> np.ndarray:
    """z-up (x, y, z) -> the corpus frame, y up and right-handed: (x, z, -y)."""
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)


def _feet(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    right = h[:, sk.R_HIP] - h[:, sk.L_HIP]
    forward = np.cross(np.array([0.0, 0.0, 1.0]), right)  # up x right
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
    down = np.array([0.0, 0.0, -0.05])
    return h[:, sk.L_ANKLE] + 0.12 * forward + down, h[:, sk.R_ANKLE] + 0.12 * forward + down


def smpl22_from_h36m(h: np.ndarray) -> np.ndarray:
    """(T, 17, 3) z-up Human3.6M -> (T, 22, 3) in HumanML3D's SMPL order, y up (the inverse of the adapter's map
    for the joints it maps one to one; the others placed in between)."""
    j = np.zeros((len(h), 22, 3))
    lt, rt = _feet(h)
    mid = lambda a, b, w=0.5: (1 - w) * a + w * b  # noqa: E731
    j[:, 0], j[:, 1], j[:, 2] = h[:, sk.PELVIS], h[:, sk.L_HIP], h[:, sk.R_HIP]
    j[:, 3] = mid(h[:, sk.PELVIS], h[:, sk.SPINE])
    j[:, 4], j[:, 5], j[:, 6] = h[:, sk.L_KNEE], h[:, sk.R_KNEE], h[:, sk.SPINE]
    j[:, 7], j[:, 8] = h[:, sk.L_ANKLE], h[:, sk.R_ANKLE]
    j[:, 9] = mid(h[:, sk.SPINE], h[:, sk.THORAX])
    j[:, 10], j[:, 11] = lt, rt
    j[:, 12] = mid(h[:, sk.THORAX], h[:, sk.NECK])
    j[:, 13] = mid(h[:, sk.THORAX], h[:, sk.L_SHOULDER], 0.3)
    j[:, 14] = mid(h[:, sk.THORAX], h[:, sk.R_SHOULDER], 0.3)
    j[:, 15] = h[:, sk.NECK]
    j[:, 16], j[:, 17] = h[:, sk.L_SHOULDER], h[:, sk.R_SHOULDER]
    j[:, 18], j[:, 19] = h[:, sk.L_ELBOW], h[:, sk.R_ELBOW]
    j[:, 20], j[:, 21] = h[:, sk.L_WRIST], h[:, sk.R_WRIST]
    return to_y_up(j)


def kit21_from_h36m(h: np.ndarray, swap_chains: bool = False) -> np.ndarray:
    """(T, 17, 3) -> KIT-ML's 21 joints, y up, millimetres; ``swap_chains`` labels the limbs the other way round."""
    j = np.zeros((len(h), 21, 3))
    lt, rt = _feet(h)
    j[:, 0] = h[:, sk.PELVIS]
    j[:, 1] = 0.5 * (h[:, sk.PELVIS] + h[:, sk.SPINE])
    j[:, 2] = 0.5 * (h[:, sk.SPINE] + h[:, sk.THORAX])
    j[:, 3], j[:, 4] = h[:, sk.THORAX], h[:, sk.NECK]
    right = {5: sk.R_SHOULDER, 6: sk.R_ELBOW, 7: sk.R_WRIST, 11: sk.R_HIP, 12: sk.R_KNEE, 13: sk.R_ANKLE}
    left = {8: sk.L_SHOULDER, 9: sk.L_ELBOW, 10: sk.L_WRIST, 16: sk.L_HIP, 17: sk.L_KNEE, 18: sk.L_ANKLE}
    for k, v in right.items():
        j[:, k] = h[:, v]
    for k, v in left.items():
        j[:, k] = h[:, v]
    j[:, 14], j[:, 15], j[:, 19], j[:, 20] = h[:, sk.R_ANKLE], rt, h[:, sk.L_ANKLE], lt
    if swap_chains:
        j = j[:, [0, 1, 2, 3, 4, 8, 9, 10, 5, 6, 7, 16, 17, 18, 19, 20, 11, 12, 13, 14, 15]]
    return to_y_up(j) * 1000.0


MOTIONS = {  # id: (activity, seconds, seed, split, captions)
    "000001": ("walking", 4.0, 1, "train", ["a person walks forward slowly#a/DET person/NOUN#0.0#0.0",
                                            "someone is walking#x#0.0#0.0",
                                            "the man waves with his right hand#x#0.5#3.5"]),
    "M000001": ("walking", 4.0, 1, "train", ["a person walks forward slowly#x#0.0#0.0"]),
    "000002": ("squats", 3.5, 2, "val", ["a person squats down and stands up#x#0.0#0.0"]),
    "000003": ("waving", 3.5, 3, "test", ["a person waves#x#0.0#0.0", "hello gesture with the arm#x#0.0#0.0"]),
    "000004": ("running", 3.5, 4, "train", ["someone runs in place#x#0.0#0.0"]),
    "000005": ("walking", 1.5, 5, "train", ["a short walk#x#0.0#0.0"]),  # too short: skipped, reported
}


def write_humanml3d(root: Path, motions: dict = MOTIONS, kit: bool = False, swap_chains: bool = False
                    ) -> dict[str, np.ndarray]:
    """A corpus in HumanML3D's processed layout; returns the true z-up 17-joint motions at FIXTURE_HZ."""
    (root / "new_joints").mkdir(parents=True)
    (root / "texts").mkdir()
    hz = 12.5 if kit else 20.0
    step = int(FIXTURE_HZ / hz) if not kit else 8
    truth, lists = {}, {"train": [], "val": [], "test": []}
    for mid, (activity, seconds, seed, split, captions) in motions.items():
        h = h36m_motion(activity, seconds, seed)
        truth[mid] = h
        joints = kit21_from_h36m(h[::step], swap_chains) if kit else smpl22_from_h36m(h[::step])
        np.save(root / "new_joints" / f"{mid}.npy", joints.astype(np.float32))
        (root / "texts" / f"{mid}.txt").write_text("\n".join(captions) + "\n")
        lists[split].append(mid)
    np.save(root / "new_joints" / "999999.npy", np.zeros((60, 21 if kit else 22, 3), np.float32))  # in no list
    for split, ids in lists.items():
        (root / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return truth


# ----------------------------------------------------------------------------------------------------------------

def test_caption_lines_and_keyword_classes():
    assert parse_caption_line("a man kicks.#a/DET man/NOUN kick/VERB#0.0#0.0") == ("a man kicks.", 0.0, 0.0)
    assert parse_caption_line("waves#x#1.5#4") == ("waves", 1.5, 4.0)
    assert parse_caption_line("no tags at all") == ("no tags at all", 0.0, 0.0)
    assert parse_caption_line("  ") is None and parse_caption_line("#tokens#0#0") is None
    groups = group_captions(["a#x#0.0#0.0", "b#x#1.0#2.0", "c#x#0.0#0.0", "d#x#1.0#2.0"])
    assert list(groups.items()) == [((0.0, 0.0), ["a", "c"]), ((1.0, 2.0), ["b", "d"])]
    labels = [LabelSpec(name="walk", values=["walks"]), LabelSpec(name="exercise", values=["jumping jacks"]),
              LabelSpec(name="other")]
    assert keyword_class("A person walks.", labels).name == "walk"
    assert keyword_class("doing jumping jacks", labels).name == "exercise"
    assert keyword_class("a person jumping", labels).name == "other"  # one word of a phrase is not the phrase
    assert keyword_class("sidewalks", labels).name == "other"  # whole words only


def test_cubic_resampling_keeps_the_virtual_imu_close_to_the_truth():
    """20 Hz -> 50 Hz: the spline's virtual IMU stays near the one of the true 50 Hz motion; linear interpolation
    (what preprocessing would do) puts spikes at the source frames."""
    h = h36m_motion("jumping_jacks", 6.0, seed=7)
    truth = imu.virtual_wrist_acc(h[::2], 50.0)
    src = h[::5]
    cubic = imu.virtual_wrist_acc(resample_pose(src, 20.0, 50.0), 50.0)
    n = len(cubic)
    t = np.arange(len(src)) / 20.0
    grid = np.arange(n) / 50.0
    linear_pose = np.stack([np.interp(grid, t, src[:, j, c]) for j in range(17) for c in range(3)], -1)
    linear = imu.virtual_wrist_acc(linear_pose.reshape(n, 17, 3), 50.0)
    inner = slice(10, n - 10)
    err_cubic = np.sqrt(np.mean((cubic[inner] - truth[:n][inner]) ** 2))
    err_linear = np.sqrt(np.mean((linear[inner] - truth[:n][inner]) ** 2))
    assert err_cubic < 0.6 * err_linear, (err_cubic, err_linear)
    assert resample_pose(src, 20.0, 50.0).shape[0] == int(np.floor((len(src) - 1) / 20 * 50 + 1e-9)) + 1


def test_humanml3d_layout_to_raw_clips(tmp_path):
    truth = write_humanml3d(tmp_path / "HumanML3D")
    adapter = get_adapter("humanml3d")
    clips = {c.clip_id: c for c in adapter.read(str(tmp_path / "HumanML3D"))}
    report = adapter.report.as_dict()
    assert set(clips) == {"humanml3d-000001", "humanml3d-000001-s1", "humanml3d-M000001", "humanml3d-000002",
                          "humanml3d-000003", "humanml3d-000004"}
    skipped = {s["item"]: s["reason"] for s in report["skipped"]}
    assert "shorter than min_seconds" in skipped["humanml3d-000005"]
    assert "not in train.txt" in skipped["new_joints/999999.npy"]
    walk = clips["humanml3d-000001"]
    assert walk.texts == ["a person walks forward slowly", "someone is walking"]
    assert walk.label_text == walk.texts[0] and walk.activity == "walk" and walk.split == "train"
    span = clips["humanml3d-000001-s1"]
    assert span.texts == ["the man waves with his right hand"] and span.activity == "wave"
    assert len(span.pose) == 150  # 0.5 s .. 3.5 s at 50 Hz
    assert clips["humanml3d-M000001"].subject == walk.subject  # a mirrored copy is not another person
    assert clips["humanml3d-000002"].split == "val" and clips["humanml3d-000002"].activity == "squat"
    assert clips["humanml3d-000003"].split == "test" and clips["humanml3d-000004"].activity == "run"
    # the pose comes back in the platform's frame at 50 Hz: joints mapped one to one match the true motion
    direct = [sk.PELVIS, sk.R_HIP, sk.R_KNEE, sk.R_ANKLE, sk.L_HIP, sk.L_KNEE, sk.L_ANKLE, sk.SPINE,
              sk.L_SHOULDER, sk.L_ELBOW, sk.L_WRIST, sk.R_SHOULDER, sk.R_ELBOW, sk.R_WRIST]
    expected = truth["000001"][::2][: len(walk.pose)]
    err = np.abs(walk.pose[:, direct] - expected[:, direct])
    assert walk.pose.dtype == np.float32 and walk.pose_hz == 50.0 and err.max() < 0.02, err.max()
    assert walk.extra["pose_prep"]["swapped_lr"] is False and walk.extra["pose_prep"]["chirality"] > 0.9
    # the virtual IMU is the platform's, from that pose (at rest it reads gravity: ~9.81 m/s^2 on average)
    np.testing.assert_allclose(walk.acc, imu.virtual_wrist_acc(walk.pose, 50.0), atol=1e-4)
    assert 8.0 < np.linalg.norm(walk.acc[:, 3:], axis=1).mean() < 12.5
    # texts survive the raw Parquet round trip (raw format 1.2)
    back = {c.clip_id: c for c in rows_to_clips(clips_to_table(clips.values()).to_pydict())}
    assert back["humanml3d-000001"].texts == walk.texts and back["humanml3d-000004"].texts == ["someone runs in place"]
    # options: spans ignored, mirrored copies excluded, a sample of the first n motions
    few = list(adapter.read(str(tmp_path / "HumanML3D"), spans="ignore", mirrored="exclude", limit=2))
    assert [c.clip_id for c in few] == ["humanml3d-000001", "humanml3d-000004"]
    assert adapter.report.counts["span_captions_ignored"] == 1 and adapter.report.counts["mirrored_excluded"] == 1
    with pytest.raises(FileNotFoundError, match="train.txt"):
        list(adapter.read(str(tmp_path)))


def test_kitml_millimetres_and_left_right_checked_from_the_feet(tmp_path):
    motions = {"00001": ("walking", 4.0, 11, "train", ["a person walks#x#0.0#0.0"]),
               "00002": ("waving", 4.0, 12, "val", ["someone waves#x#0.0#0.0"])}
    truth = write_humanml3d(tmp_path / "KIT", motions, kit=True)
    adapter = get_adapter("kitml")
    clips = {c.clip_id: c for c in adapter.read(str(tmp_path / "KIT"))}
    walk = clips["kitml-00001"]
    assert walk.extra["pose_prep"]["units"] == "mm" and walk.extra["pose_prep"]["swapped_lr"] is False
    expected = truth["00001"][::2][: len(walk.pose)]
    assert np.abs(walk.pose[:, sk.R_WRIST] - expected[:, sk.R_WRIST]).max() < 0.03
    # the same corpus with the limbs labelled the other way round: detected from the feet and swapped back
    write_humanml3d(tmp_path / "KIT2", motions, kit=True, swap_chains=True)
    swapped = {c.clip_id: c for c in adapter.read(str(tmp_path / "KIT2"))}
    assert swapped["kitml-00001"].extra["pose_prep"]["swapped_lr"] is True
    assert adapter.report.details["motions"]["swapped_lr"] == 2
    np.testing.assert_allclose(swapped["kitml-00001"].pose, walk.pose, atol=1e-4)
    with pytest.raises(ValueError, match=r"\(frames, 21, 3\)"):
        prepare_pose(np.zeros((30, 22, 3)), KIT21, 12.5)
    assert SMPL22.num_joints == 22


# ----------------------------------------------------------------------------------------------------------------
# Bring-your-own multimodal corpus
# ----------------------------------------------------------------------------------------------------------------

VIDEO_DIM = 16


def write_byo_corpus(root: Path, n_per_split: dict[str, int] | None = None, seconds: float = 4.0) -> Path:
    """A BYO corpus: Human3.6M pose in centimetres, z up, at 25 Hz; video features at 10 Hz; 1-3 texts per clip."""
    n_per_split = n_per_split or {"train": 6, "val": 3, "test": 3}
    (root / "pose").mkdir(parents=True)
    (root / "video").mkdir()
    activities = [("walking", ["a person walks", "walking forward"]), ("squats", ["someone squats"]),
                  ("waving", ["a wave of the hand", "greeting", "waves hello"])]
    lines, k = [], 0
    for split, n in n_per_split.items():
        for i in range(n):
            activity, texts = activities[i % len(activities)]
            h = h36m_motion(activity, seconds, seed=100 + k)[::4] * 100.0  # 25 Hz, cm
            cid = f"clip{k:03d}"
            np.save(root / "pose" / f"{cid}.npy", h.astype(np.float32))
            video = np.random.default_rng(k).normal(size=(int(seconds * 10), VIDEO_DIM)).astype(np.float32)
            np.save(root / "video" / f"{cid}.npy", video)
            row = {"id": cid, "pose": f"pose/{cid}.npy", "video": f"video/{cid}.npy", "texts": texts,
                   "subject": f"s{k % 4}", "split": split}
            if activity == "squats":
                row["activity"] = "exercise"
            lines.append(json.dumps(row))
            k += 1
    (root / "clips.jsonl").write_text("\n".join(lines) + "\n")
    card = {"kind": "motion_corpus", "name": "mycorpus", "title": "test corpus", "licence": "CC0 (test fixture)",
            "pose": {"joints": "h36m17", "rate_hz": 25, "units": "cm", "up": "+z"},
            "video": {"rate_hz": 10, "dim": VIDEO_DIM}, "clips": "clips.jsonl",
            "labels": [{"name": "walk", "values": ["walks", "walking"]}, {"name": "wave", "values": ["wave", "waves"]},
                       {"name": "exercise"}, {"name": "other"}]}
    path = root / "corpus.yaml"
    path.write_text(yaml.safe_dump(card))
    return path


def test_byo_corpus_card_to_raw_clips_and_its_errors(tmp_path):
    card = write_byo_corpus(tmp_path / "corpus", {"train": 3, "val": 1})
    adapter = get_adapter("corpus", card=str(card))
    clips = list(adapter.read())
    assert [c.activity for c in clips] == ["walk", "exercise", "wave", "walk"]
    assert clips[2].texts == ["a wave of the hand", "greeting", "waves hello"]
    assert clips[2].label_text == "a wave of the hand"
    assert clips[0].video.shape == (40, VIDEO_DIM) and clips[0].video_hz == 10.0
    assert clips[0].extra["pose_prep"]["units"] == "cm" and clips[0].pose.shape == (4 * 50 - 1, 17, 3)
    assert clips[0].subject == "mycorpus-s0" and clips[3].split == "val"
    doc = ingest(None, None, str(tmp_path / "run"), card=str(card))  # a kind: motion_corpus card is recognised
    assert doc["adapter"] == "corpus" and doc["clips"] == 4 and doc["card"]["gravity"] == "not_applicable"

    def broken(edit, line_edit=None):
        root = tmp_path / f"b{len(list(tmp_path.iterdir()))}"
        path = write_byo_corpus(root, {"train": 2})
        data = yaml.safe_load(path.read_text())
        edit(data)
        path.write_text(yaml.safe_dump(data))
        if line_edit:
            rows = [json.loads(x) for x in (root / "clips.jsonl").read_text().splitlines()]
            line_edit(rows[0])
            (root / "clips.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        return list(get_adapter("corpus", card=str(path)).read())

    with pytest.raises(CardError, match=r"clips.jsonl line 1.*'clips.pose'.*climbs out"):
        broken(lambda d: None, lambda r: r.update(pose="../../etc/x.npy"))
    with pytest.raises(CardError, match="'clips.texts'"):
        broken(lambda d: None, lambda r: r.update(texts=[]))
    with pytest.raises(CardError, match=r"'pose'.*\(frames, 22, 3\) for joint set smpl22"):
        broken(lambda d: d["pose"].update(joints="smpl22"))
    with pytest.raises(CardError, match="'video.dim'"):
        broken(lambda d: d["video"].update(dim=8))
    with pytest.raises(CardError, match="'clips.activity'"):
        broken(lambda d: None, lambda r: r.update(activity="juggling"))
    with pytest.raises(CardError, match="'pose.joints'|joints must be one of"):
        broken(lambda d: d["pose"].update(joints="smpl24"))
