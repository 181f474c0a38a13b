"""Sensor realism for the virtual wrist IMU, drawn anew for every pretraining batch.

The virtual IMU of :mod:`mujo.data.imu` is an ideal sensor: fixed to the forearm frame at the wrist joint, exact,
noiseless, sampled on a perfect 50 Hz clock, on both wrists, gravity included. A real watch differs in every one of
those respects, and a model pretrained only on the ideal signal meets a distribution it never saw. Each switch below
(``pretrain.realism`` in the config, :class:`mujo.config.RealismConfig`) adds one real-world effect; all are off by
default, and off is the identity (the batch is returned untouched). :class:`SensorRealism` applies them to the
``acc`` (and, where a switch needs it, ``pose``) columns of a batch in the order a real recording happens:

1. **mirror** (``mirror_p``): the sample becomes its left/right mirror image, as if a left-handed subject performed
   the mirrored movement (or the watch hand is unknown). Mirroring the world in the body's sagittal plane swaps the
   two wrists and, in the forearm frame of :func:`mujo.data.imu.forearm_frame` (x along the forearm, z the elbow's
   flexion axis = a cross product, y = z x x), negates z only: a reflection keeps the components along reflected
   vectors (x, y) and flips the one along a cross product (z). The pose is mirrored with it (y -> -y, joints
   swapped), so pose and acc stay one motion. Video features and label texts are not mirrored (texts naming a side
   are rare in the corpus; see docs/sensor-realism.md).
2. **placement** (``placement``): the watch sits on the forearm a few centimetres proximal to the wrist joint, not at
   it. For a point at distance ``d`` from the wrist towards the elbow the rigid forearm gives
   ``p = w - d (w - e) / |w - e|``; its extra acceleration ``d^2/dt^2 (p - w)`` (centripetal and tangential terms of
   the forearm's rotation) is added in the forearm frame, computed from the window's own pose (samples without pose
   keep their signal).
3. **orientation** (``orientation``): the watch's axes are not the forearm frame. ``wrist``: a uniform roll about the
   forearm axis (the watch worn anywhere round the wrist, face in or out, and manufacturers' axis conventions that
   differ by quarter turns) plus small tilts N(0, ``tilt_deg``) about the other axes (strap play, wrist curvature);
   ``any``: a uniform random rotation (UniMTS's augmentation). A rotation preserves the norm of every reading.
4. **sensor** (``sensor``): consumer MEMS accelerometers (BMI160/BMI270, LSM6DS family, as in current watches):
   per-axis sensitivity error N(0, ``gain_std``) (datasheets: +-1-3 %), zero-g offset N(0, ``bias_std``) m/s^2
   (+-20-60 mg typical after mounting), white noise of ``noise_ug`` micro-g/sqrt(Hz) over the Nyquist band
   (datasheets: 70-300), and quantisation to 16-bit over the full-scale range.
5. **saturation** (``saturation``): readings clip at the full-scale range, drawn per sample from ``range_g``
   (watches run +-8 g or +-16 g; fast punches and racket swings exceed 8 g at the wrist).
6. **linear** (``linear_p``): the gravity-removed variant ("linear acceleration", what some datasets and phone APIs
   give): the device's fusion estimate of gravity, in its own frame, is subtracted. With pose the estimate is exact
   (``R^T (0, 0, 9.81)`` of the forearm frame, rotated with the watch); without pose it is the window's mean reading
   (the low-pass estimate of a device without a gyroscope). At rest the mean norm drops by ~9.81 m/s^2.
7. **jitter** (``jitter``): a watch's clock is not exact and its samples are not evenly spaced: the window is read
   at times ``c + (k - c)(1 + e) / fs + n_k`` with a rate error ``e`` ~ U(+-``rate_error``) (Android Wear "50 Hz"
   streams deliver 47-53 Hz) and per-sample timing noise ``n_k`` ~ N(0, ``jitter_ms``), linearly interpolated,
   and then taken as uniform 50 Hz as a pipeline that trusts the nominal rate does.
8. **one wrist** (``one_wrist_p``): most real datasets carry one watch; the platform puts it in its wrist slot and
   zeros the other (``mujo.adapters.common.wrist_acc``). With this probability a sample keeps one random wrist and
   the other becomes zeros, so pretraining sees both layouts.

Determinism: every draw comes from ``numpy.random.default_rng([seed, realism.seed, rank, step])``, so the same run
sees the same augmentation at the same step (a resumed run too), and every step, hence every epoch, sees new draws.
Plain numpy and torch; no Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from mujo.data import skeleton as sk
from mujo.data.imu import DEFAULT_SMOOTH_SIGMA_S, G, forearm_frame, gaussian_smooth

G0 = 9.80665  # standard gravity: datasheets give ranges and noise in g of this size
MIRROR_JOINTS = (0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 11, 12, 13)
"""Human3.6M joint permutation exchanging left and right."""
_WRISTS = ((sk.L_SHOULDER, sk.L_ELBOW, sk.L_WRIST), (sk.R_SHOULDER, sk.R_ELBOW, sk.R_WRIST))
SWITCHES = ("mirror", "placement", "orientation", "sensor", "saturation", "linear", "jitter", "one_wrist")
"""The switch names, in the order they are applied (the benchmark turns them on one at a time)."""


@dataclass(frozen=True)
class RealismParams:
    """The switches and their physical parameters (mirrors :class:`mujo.config.RealismConfig`)."""

    mirror_p: float = 0.0
    placement: bool = False
    placement_cm: tuple[float, float] = (1.0, 6.0)
    orientation: str = "off"  # off | wrist | any
    tilt_deg: float = 10.0
    sensor: bool = False
    gain_std: float = 0.02
    bias_std: float = 0.4
    noise_ug: float = 150.0
    saturation: bool = False
    range_g: tuple[float, ...] = (8.0, 16.0)
    linear_p: float = 0.0
    jitter: bool = False
    rate_error: float = 0.03
    jitter_ms: float = 2.0
    one_wrist_p: float = 0.0
    seed: int = 0

    @classmethod
    def of(cls, cfg: Any | None) -> "RealismParams":
        """From a :class:`mujo.config.RealismConfig` (or anything with the same fields; None: all off)."""
        if cfg is None:
            return cls()
        data = cfg.model_dump() if hasattr(cfg, "model_dump") else dict(cfg)
        data["placement_cm"] = tuple(data.get("placement_cm", cls.placement_cm))
        data["range_g"] = tuple(data.get("range_g", cls.range_g))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def only(self, switch: str) -> "RealismParams":
        """The same parameters with only ``switch`` on (at its full strength), for ablations."""
        on = {"mirror": {"mirror_p": 0.5}, "placement": {"placement": True}, "orientation": {"orientation": "wrist"},
              "sensor": {"sensor": True}, "saturation": {"saturation": True}, "linear": {"linear_p": 0.5},
              "jitter": {"jitter": True}, "one_wrist": {"one_wrist_p": 0.5}}
        if switch not in on:
            raise ValueError(f"unknown realism switch {switch!r}; known: {', '.join(SWITCHES)}")
        base = {**self.__dict__, **{k: v for k, v in RealismParams().__dict__.items() if k in _SWITCH_FIELDS}}
        return RealismParams(**{**base, **on[switch]})

    def all_on(self) -> "RealismParams":
        """Every switch on (mirror, linear and one-wrist with probability 0.5)."""
        return RealismParams(**{**self.__dict__, "mirror_p": 0.5, "placement": True, "orientation": "wrist",
                                "sensor": True, "saturation": True, "linear_p": 0.5, "jitter": True,
                                "one_wrist_p": 0.5})

    @property
    def active(self) -> bool:
        return (self.mirror_p > 0 or self.placement or self.orientation != "off" or self.sensor or self.saturation
                or self.linear_p > 0 or self.jitter or self.one_wrist_p > 0)


_SWITCH_FIELDS = ("mirror_p", "placement", "orientation", "sensor", "saturation", "linear_p", "jitter", "one_wrist_p")


# --------------------------------------------------------------------------------------------------------------
# The effects, each on numpy arrays: acc (B, T, 6) float64, pose (B, T, 17, 3) float64, per-sample draws
# --------------------------------------------------------------------------------------------------------------

def mirror_acc(acc: np.ndarray) -> np.ndarray:
    """The wrist readings of the left/right mirrored motion: wrists swapped, the forearm-frame z negated."""
    out = np.concatenate([acc[..., 3:6], acc[..., 0:3]], axis=-1)
    out[..., 2] *= -1.0
    out[..., 5] *= -1.0
    return out


def mirror_pose(pose: np.ndarray) -> np.ndarray:
    """The pose mirrored in the world's x-z plane (y -> -y) with left and right joints swapped."""
    out = pose[..., MIRROR_JOINTS, :].copy()
    out[..., 1] *= -1.0
    return out


def _second_derivative(x: np.ndarray, fs: float) -> np.ndarray:
    dt = 1.0 / fs
    return np.gradient(np.gradient(x, dt, axis=0), dt, axis=0)


def wrist_frames(pose: np.ndarray, fs: float) -> list[np.ndarray]:
    """The two forearm frames ``(T, 3, 3)`` of one window's pose (smoothed as the virtual IMU smooths it)."""
    p = gaussian_smooth(pose, DEFAULT_SMOOTH_SIGMA_S * fs)
    return [forearm_frame(p[:, e], p[:, w], p[:, s]) for s, e, w in _WRISTS]


def placement_offset(pose: np.ndarray, frames: list[np.ndarray], distance_m: np.ndarray, fs: float) -> np.ndarray:
    """``(T, 6)`` extra reading of sensors ``distance_m`` (per wrist) up the forearm from the wrist joint."""
    p = gaussian_smooth(pose, DEFAULT_SMOOTH_SIGMA_S * fs)
    out = []
    for (_, e, w), rot, d in zip(_WRISTS, frames, distance_m):
        axis = p[:, w] - p[:, e]
        offset = -d * axis / np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-9)
        out.append(np.einsum("tji,tj->ti", rot, _second_derivative(offset, fs)))
    return np.concatenate(out, axis=-1)


def random_rotations(rng: np.random.Generator, n: int, mode: str, tilt_deg: float) -> np.ndarray:
    """``(n, 3, 3)`` rotations: ``wrist`` = uniform roll about x then small tilts about y and z; ``any`` = uniform."""
    if mode == "any":
        q = rng.standard_normal((n, 4))
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        w, x, y, z = q.T
        return np.stack([np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
                         np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
                         np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], 1)
    roll = rng.uniform(-np.pi, np.pi, n)
    tilt = np.radians(tilt_deg) * rng.standard_normal((n, 2))

    def rot(axis: int, a: np.ndarray) -> np.ndarray:
        c, s = np.cos(a), np.sin(a)
        i, j = [(1, 2), (2, 0), (0, 1)][axis]
        r = np.zeros((len(a), 3, 3))
        r[:, axis, axis] = 1.0
        r[:, i, i] = r[:, j, j] = c
        r[:, i, j], r[:, j, i] = -s, s
        return r

    return rot(0, roll) @ rot(1, tilt[:, 0]) @ rot(2, tilt[:, 1])


def resample_jittered(x: np.ndarray, rng: np.random.Generator, fs: float, rate_error: float,
                      jitter_ms: float) -> np.ndarray:
    """One window ``(T, C)`` read at a wrong rate and uneven times, then taken as uniform (linear interpolation,
    held constant beyond the window's ends)."""
    t = np.arange(len(x), dtype=np.float64)
    c = (len(x) - 1) / 2.0
    at = c + (t - c) * (1.0 + rng.uniform(-rate_error, rate_error)) + rng.normal(0.0, jitter_ms * 1e-3 * fs, len(t))
    at = np.clip(np.sort(at), 0.0, len(x) - 1.0)
    lo = np.minimum(np.floor(at).astype(int), len(x) - 2)
    w = (at - lo)[:, None]
    return x[lo] * (1.0 - w) + x[lo + 1] * w


class SensorRealism:
    """Applies the configured realism to batches (see the module docstring); the identity when every switch is off.

    ``fs`` is the windows' rate (50 Hz); ``seed`` the run's seed (``pretrain.seed``), combined with the realism
    section's own ``seed``, the rank and the step for each batch's draws.
    """

    def __init__(self, params: RealismParams | Any | None = None, *, fs: float = 50.0, seed: int = 0) -> None:
        self.p = params if isinstance(params, RealismParams) else RealismParams.of(params)
        self.fs = float(fs)
        self.seed = int(seed)

    @property
    def active(self) -> bool:
        return self.p.active

    def rng(self, rank: int, step: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.p.seed, rank, step])

    def apply_arrays(self, acc: np.ndarray, pose: np.ndarray | None, has_pose: np.ndarray | None,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        """``acc`` (B, T, 6) and ``pose`` (B, T, 17, 3) (or None) with the realism applied; new arrays."""
        p, fs = self.p, self.fs
        acc = np.array(acc, dtype=np.float64)
        b, t, _ = acc.shape
        pose = None if pose is None else np.array(pose, dtype=np.float64)
        posed = np.zeros(b, bool) if pose is None else (np.ones(b, bool) if has_pose is None
                                                        else np.asarray(has_pose, bool).copy())
        # every draw is made for every sample whether it is used or not, so one switch does not shift the others
        mirror = rng.random(b) < p.mirror_p
        distance = rng.uniform(*p.placement_cm, (b, 2)) / 100.0
        rotations = random_rotations(rng, 2 * b, p.orientation if p.orientation != "off" else "wrist",
                                     p.tilt_deg).reshape(b, 2, 3, 3)
        gain = 1.0 + p.gain_std * rng.standard_normal((b, 6))
        bias = p.bias_std * rng.standard_normal((b, 6))
        noise = rng.standard_normal((b, t, 6)) * (p.noise_ug * 1e-6 * G0 * np.sqrt(fs / 2.0))
        full_scale = np.asarray(p.range_g, dtype=np.float64)[rng.integers(len(p.range_g), size=b)] * G0
        linear = rng.random(b) < p.linear_p
        one_wrist = rng.random(b) < p.one_wrist_p
        keep_right = rng.random(b) < 0.5
        jitter_seeds = rng.integers(2**31, size=b)

        if mirror.any():
            acc[mirror] = mirror_acc(acc[mirror])
            if pose is not None:
                pose[mirror] = mirror_pose(pose[mirror])
        need_frames = (p.placement or linear.any()) and posed.any()
        gravity = np.zeros_like(acc)  # gravity's share of each reading, in the forearm frame (linear samples only)
        for i in range(b):
            if not need_frames or not posed[i] or not (p.placement or linear[i]):
                continue
            frames = wrist_frames(pose[i], fs)
            if p.placement:
                acc[i] += placement_offset(pose[i], frames, distance[i], fs)
            if linear[i]:
                up = np.array([0.0, 0.0, G])
                gravity[i] = np.concatenate([np.einsum("tji,j->ti", r, up) for r in frames], axis=-1)
        no_pose_linear = linear & ~posed
        if no_pose_linear.any():  # a device without gyroscope: the low-pass (window mean) estimate
            gravity[no_pose_linear] = acc[no_pose_linear].mean(axis=1, keepdims=True)
        if p.orientation != "off":
            for w in range(2):
                cols = slice(3 * w, 3 * w + 3)
                acc[..., cols] = np.einsum("bji,btj->bti", rotations[:, w], acc[..., cols])
                gravity[..., cols] = np.einsum("bji,btj->bti", rotations[:, w], gravity[..., cols])
        if p.sensor:
            acc = acc * gain[:, None, :] + bias[:, None, :] + noise
            gravity = gravity * gain[:, None, :]
        if p.saturation:
            acc = np.clip(acc, -full_scale[:, None, None], full_scale[:, None, None])
        if p.sensor:  # 16-bit converter over the full-scale range (the largest of range_g when not saturating)
            lsb = (full_scale if p.saturation else np.full(b, max(p.range_g) * G0)) * 2.0 / 65536.0
            acc = np.round(acc / lsb[:, None, None]) * lsb[:, None, None]
        if linear.any():
            acc[linear] -= gravity[linear]
        if p.jitter:
            for i in range(b):
                acc[i] = resample_jittered(acc[i], np.random.default_rng(jitter_seeds[i]), fs, p.rate_error,
                                           p.jitter_ms)
        if one_wrist.any():
            acc[one_wrist & keep_right, :, 0:3] = 0.0
            acc[one_wrist & ~keep_right, :, 3:6] = 0.0
        return acc, pose

    def __call__(self, batch: Mapping[str, Any], *, rank: int = 0, step: int = 0) -> Mapping[str, Any]:
        """A pretraining batch (columns as :mod:`mujo.schema` names them, torch tensors or numpy arrays) with realism
        applied to ``acc`` (and ``pose`` when mirroring); the batch itself when every switch is off."""
        if not self.active or "acc" not in batch:
            return batch
        acc = batch["acc"]
        pose = batch.get("pose")
        has_pose = batch.get("has_pose")
        to_np = (lambda x: x.detach().cpu().numpy()) if hasattr(acc, "detach") else np.asarray
        new_acc, new_pose = self.apply_arrays(to_np(acc), None if pose is None else to_np(pose),
                                              None if has_pose is None else to_np(has_pose), self.rng(rank, step))
        out = dict(batch)
        if hasattr(acc, "detach"):
            import torch

            out["acc"] = torch.as_tensor(new_acc, dtype=acc.dtype, device=acc.device)
            if pose is not None and self.p.mirror_p > 0:
                out["pose"] = torch.as_tensor(new_pose, dtype=pose.dtype, device=pose.device)
        else:
            out["acc"] = new_acc.astype(np.asarray(acc).dtype)
            if pose is not None and self.p.mirror_p > 0:
                out["pose"] = new_pose.astype(np.asarray(pose).dtype)
        return out


__all__ = ["MIRROR_JOINTS", "RealismParams", "SWITCHES", "SensorRealism", "mirror_acc", "mirror_pose",
           "placement_offset", "random_rotations", "resample_jittered", "wrist_frames"]
