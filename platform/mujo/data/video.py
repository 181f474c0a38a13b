"""The documented stand-in for CLIP video features.

The method embeds video frames with a frozen image model (CLIP). The synthetic corpus has no pixels, so this module
produces per-frame feature vectors with the properties that matter downstream: they carry the body pose as seen by
the clip's camera (informative about the activity), they depend on the viewpoint, they share a clip-specific offset
that has nothing to do with the activity (background, clothing, lighting), and they are noisy.

Per frame ``t`` of a pose sequence:

1. Camera view: rotate the world about z by ``-camera_yaw`` so the camera's optical axis (yaw ``camera_yaw``) is +x;
   image right is -y, image up is +z.
2. Normalise: subtract the pelvis (root-centring, per frame) and divide by the clip's median distance of the joints
   from the pelvis (scale normalisation, one scalar per clip, so subjects' sizes and camera distances cancel but
   pose changes within the clip remain).
3. Project: pinhole camera at distance ``CAMERA_DISTANCE`` (in normalised units) in front of the root, focal length
   ``CAMERA_DISTANCE``: ``(u, v) = f (-y, z) / (f + x)``. Depth survives only through the perspective, as in an
   image. The 17 projected joints give a 34-d vector ``k_t``.
4. Embed: ``h_t = tanh(k_t W + b)`` with a fixed random ``W`` (``34 x dim``, entries N(0, ``GAIN^2 / 34``)) and ``b``
   (N(0, 0.1^2)). ``W`` and ``b`` come from the constant seed ``PROJECTION_SEED``, so every clip, process and run
   uses the same "image model" (cached per ``dim``).
5. Appearance and noise: ``x_t = h_t + a_clip + e_t``, with ``a_clip ~ N(0, APPEARANCE_STD^2 I)`` drawn from
   ``clip_seed`` (constant within the clip) and ``e_t ~ N(0, noise^2 I)`` per frame.

Output: float32 ``(T, dim)`` at the pose's frame rate. Pose features alone would make the video modality a near
copy of the pose modality; the viewpoint dependence, the 2-D projection, the appearance offset and the noise keep it
informative but imperfect.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from mujo.data import skeleton as sk

PROJECTION_SEED = 20240517
"""Seed of the fixed random "image model" shared by all clips."""
CAMERA_DISTANCE = 4.0
GAIN = 1.5
APPEARANCE_STD = 0.3
DEFAULT_NOISE = 0.05


@lru_cache(maxsize=8)
def _projection(dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed random embedding ``(W (34, dim), b (dim,))`` for a feature size (read-only arrays)."""
    rng = np.random.default_rng(PROJECTION_SEED)
    n_in = 2 * sk.NUM_JOINTS
    weight = rng.normal(0.0, GAIN / np.sqrt(n_in), (n_in, dim))
    bias = rng.normal(0.0, 0.1, dim)
    weight.setflags(write=False)
    bias.setflags(write=False)
    return weight, bias


def project_pose(pose: np.ndarray, camera_yaw: float) -> np.ndarray:
    """Steps 1-3: root-centred, scale-normalised image-plane keypoints ``(T, 17, 2)`` seen from ``camera_yaw``."""
    p = np.asarray(pose, dtype=np.float64)
    c, s = np.cos(camera_yaw), np.sin(camera_yaw)
    x = c * p[..., 0] + s * p[..., 1]  # world rotated by -camera_yaw about z
    y = -s * p[..., 0] + c * p[..., 1]
    cam = np.stack([x, y, p[..., 2]], axis=-1)
    cam -= cam[:, sk.PELVIS:sk.PELVIS + 1]
    scale = np.median(np.linalg.norm(cam, axis=-1))
    cam /= max(scale, 1e-6)
    depth = CAMERA_DISTANCE + cam[..., 0]
    focal = CAMERA_DISTANCE / np.maximum(depth, 0.1 * CAMERA_DISTANCE)
    return np.stack([-cam[..., 1] * focal, cam[..., 2] * focal], axis=-1)


def video_features(pose: np.ndarray, camera_yaw: float, clip_seed: int, dim: int = 512,
                   noise: float = DEFAULT_NOISE) -> np.ndarray:
    """Stand-in CLIP features of a clip: float32 ``(T, dim)`` (see the module docstring for the model).

    Args:
        pose: ``(T, 17, 3)`` Human3.6M joints, metres, world z up.
        camera_yaw: yaw (radians) of the camera's optical axis in the world.
        clip_seed: seed of the clip's appearance vector and frame noise.
        dim: feature size.
        noise: standard deviation of the per-frame noise.
    """
    weight, bias = _projection(dim)
    keypoints = project_pose(pose, camera_yaw).reshape(len(pose), -1)
    rng = np.random.default_rng([clip_seed, dim])
    appearance = rng.normal(0.0, APPEARANCE_STD, dim)
    feats = np.tanh(keypoints @ weight + bias) + appearance + rng.normal(0.0, noise, (len(pose), dim))
    return feats.astype(np.float32)
