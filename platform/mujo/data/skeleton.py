"""The 17-joint Human3.6M skeleton: joint names, parents and named indices.

Order (the standard Human3.6M 17-joint layout used by most 3-D pose estimators)::

    0 pelvis   1 r_hip   2 r_knee   3 r_ankle   4 l_hip   5 l_knee   6 l_ankle   7 spine   8 thorax
    9 neck (nose)   10 head   11 l_shoulder   12 l_elbow   13 l_wrist   14 r_shoulder   15 r_elbow   16 r_wrist

Every joint's parent precedes it, so a single pass in index order is a valid forward-kinematics traversal.
"""

from __future__ import annotations

JOINTS: tuple[str, ...] = (
    "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "spine", "thorax", "neck", "head",
    "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
)
NUM_JOINTS = 17

PELVIS, R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE = 0, 1, 2, 3, 4, 5, 6
SPINE, THORAX, NECK, HEAD = 7, 8, 9, 10
L_SHOULDER, L_ELBOW, L_WRIST, R_SHOULDER, R_ELBOW, R_WRIST = 11, 12, 13, 14, 15, 16

PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
"""``PARENTS[j]`` is the parent joint of ``j`` (-1 for the root, the pelvis)."""

BONES: tuple[tuple[int, int], ...] = tuple((p, j) for j, p in enumerate(PARENTS) if p >= 0)
"""(parent, child) pairs, one per bone (16)."""
