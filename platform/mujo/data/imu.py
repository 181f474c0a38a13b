"""Virtual accelerometers, as a real IMU measures them.

An accelerometer fixed to a body segment measures the specific force in its own frame::

    a_sensor = R^T (a_world - g),    g = (0, 0, -9.81) m/s^2 (world z up)

where ``R`` maps sensor-frame vectors to the world frame (its columns are the sensor axes in world coordinates)
and ``a_world`` is the second derivative of the sensor's position. At rest with ``R = I`` it reads
``(0, 0, +9.81)``: gravity appears as an upward acceleration.

Differentiation: positions are (optionally) smoothed with a Gaussian kernel first, then differentiated twice with
central differences (``np.gradient`` twice, i.e. ``(x[t+2] - 2 x[t] + x[t-2]) / (2 dt)^2`` in the interior).
Twice-differentiated position noise is amplified by ~fs^2, so pose-estimation jitter must be smoothed away; a
Gaussian of standard deviation ``sigma`` seconds multiplies a sinusoid of angular frequency ``w`` by
``exp(-(w sigma)^2 / 2)`` (0.88 at 2 Hz, 0.60 at 4 Hz for the default 0.04 s). The smoothing pads with an odd
reflection at the ends, which keeps constant-velocity motion free of end artefacts.

The wrist sensors sit in a forearm-fixed frame (:func:`forearm_frame`); :func:`virtual_wrist_acc` gives both
wrists in the ``acc`` layout ``[lx, ly, lz, rx, ry, rz]``.
"""

from __future__ import annotations

import numpy as np

from mujo.data import skeleton as sk

G = 9.81
GRAVITY = np.array([0.0, 0.0, -G])
GRAVITY.setflags(write=False)
"""Gravitational acceleration in the world frame (z up), m/s^2."""

DEFAULT_SMOOTH_SIGMA_S = 0.04
"""Default Gaussian smoothing (seconds) applied to positions before differentiation."""

_EPS = 1e-9
_DOWN = np.array([0.0, 0.0, -1.0])
_HINT = np.array([0.8, 0.0, 0.6])  # last-resort world reference, away from the vertical and the horizontal plane


def gaussian_smooth(x: np.ndarray, sigma_samples: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 (time), kernel truncated at 4 sigma, odd-reflection padding.

    Odd reflection (``2 x[0] - x[k]``) continues a linear trend through the ends, so a signal moving at constant
    velocity is returned unchanged. ``sigma_samples <= 0`` returns a float64 copy.
    """
    x = np.asarray(x, dtype=np.float64)
    if sigma_samples <= 0 or x.shape[0] < 2:
        return x.copy()
    radius = int(np.ceil(4.0 * sigma_samples))
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (k / sigma_samples) ** 2)
    kernel /= kernel.sum()
    pad = [(radius, radius)] + [(0, 0)] * (x.ndim - 1)
    xp = np.pad(x, pad, mode="reflect", reflect_type="odd")
    n = x.shape[0]
    out = np.zeros_like(x)
    for i, w in enumerate(kernel):
        out += w * xp[i:i + n]
    return out


def sensor_acceleration(position: np.ndarray, rotation: np.ndarray, fs: float,
                        smooth_sigma_s: float | None = DEFAULT_SMOOTH_SIGMA_S) -> np.ndarray:
    """Accelerometer reading ``R^T (a_world - g)`` of a sensor with the given trajectory and orientation.

    Args:
        position: ``(T, 3)`` sensor position in metres, world frame (z up).
        rotation: ``(T, 3, 3)`` sensor-to-world rotations (columns = sensor axes in world coordinates).
        fs: sampling rate in Hz.
        smooth_sigma_s: Gaussian smoothing of the position before differentiation, in seconds (``None`` or 0:
            none). The rotation is used as given.

    Returns:
        ``(T, 3)`` float64 specific force in the sensor frame, m/s^2. Fewer than two frames: no motion term.
    """
    p = np.asarray(position, dtype=np.float64)
    rot = np.asarray(rotation, dtype=np.float64)
    if smooth_sigma_s:
        p = gaussian_smooth(p, smooth_sigma_s * fs)
    if p.shape[0] >= 2:
        dt = 1.0 / fs
        a_world = np.gradient(np.gradient(p, dt, axis=0), dt, axis=0)
    else:
        a_world = np.zeros_like(p)
    return np.einsum("tji,tj->ti", rot, a_world - GRAVITY)


def _normalize(v: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Unit vectors along the last axis; rows shorter than ``_EPS`` take the matching row of ``fallback``."""
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.where(norm > _EPS, v / np.maximum(norm, _EPS), fallback)


def _any_perpendicular(x: np.ndarray) -> np.ndarray:
    """A unit vector perpendicular to each unit row of ``x`` (crossed with its least-aligned world axis)."""
    axis = np.eye(3)[np.argmin(np.abs(x), axis=-1)]
    return _normalize(np.cross(x, axis), np.broadcast_to(_DOWN, x.shape))


def _temporal_mean(v: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian-weighted moving average of ``(T, 3)`` rows over time (zero padding: a weighted sum)."""
    radius = min(int(np.ceil(3.0 * sigma_frames)), v.shape[0] - 1)
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (k / sigma_frames) ** 2)
    kernel /= kernel.sum()
    n = v.shape[0]
    return np.stack([np.convolve(v[:, i], kernel)[radius:radius + n] for i in range(3)], axis=-1)


def forearm_frame(elbow: np.ndarray, wrist: np.ndarray, shoulder: np.ndarray, *,
                  straight_sin: float = 0.25, fallback_sigma_frames: float = 25.0) -> np.ndarray:
    """A right-handed orthonormal frame fixed to the forearm, ``(T, 3, 3)`` sensor-to-world (columns x, y, z).

    * x: along the forearm, elbow -> wrist.
    * z: the arm-plane normal ``(elbow - shoulder) x (wrist - elbow)`` normalised, i.e. the elbow's flexion axis
      (its length before normalisation is the sine of the elbow angle).
    * y = z x x: for a bent arm, the direction the forearm moves when the elbow flexes.

    Fallback for a straight arm (the plane is undefined and its normal noisy): the normal is blended, with a
    smoothstep weight of ``|sin elbow angle| / straight_sin``, into a reference normal taken from the arm itself
    at other times: the Gaussian-weighted (``fallback_sigma_frames``) moving average of the unit normals weighted
    by ``sin^2`` of the elbow angle, plus a small clip-wide average, plus a tiny fixed world vector for clips
    where the arm is never bent. Above ``straight_sin`` (~14.5 degrees) z is exactly the arm-plane normal; below
    it the roll about the forearm follows the neighbouring bent frames continuously instead of flipping with
    noise. The reference is projected perpendicular to x; in the last-resort case of a zero projection (a
    never-bent arm pointing along the fixed vector) an arbitrary perpendicular is used, so the frame is never NaN.
    """
    elbow = np.asarray(elbow, dtype=np.float64)
    wrist = np.asarray(wrist, dtype=np.float64)
    shoulder = np.asarray(shoulder, dtype=np.float64)
    down = np.broadcast_to(_DOWN, elbow.shape)
    x = _normalize(wrist - elbow, down)
    upper = _normalize(elbow - shoulder, x)
    normal = np.cross(upper, x)
    sin_elbow = np.linalg.norm(normal, axis=-1, keepdims=True)
    unit_normal = normal / np.maximum(sin_elbow, _EPS)
    weighted = sin_elbow ** 2 * unit_normal
    reference = (_temporal_mean(weighted, fallback_sigma_frames) + 0.1 * weighted.mean(axis=0)
                 + 1e-3 * _HINT)
    reference = _normalize(reference, np.broadcast_to(_HINT, reference.shape))
    u = np.clip(sin_elbow / straight_sin, 0.0, 1.0)
    blend = u * u * (3.0 - 2.0 * u)
    z = blend * unit_normal + (1.0 - blend) * reference
    z = z - np.sum(z * x, axis=-1, keepdims=True) * x
    z = _normalize(z, _any_perpendicular(x))
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=-1)


def virtual_wrist_acc(pose: np.ndarray, fs: float,
                      smooth_sigma_s: float | None = DEFAULT_SMOOTH_SIGMA_S) -> np.ndarray:
    """Virtual wrist accelerometers from a pose sequence.

    The joint trajectories are smoothed once (``smooth_sigma_s`` seconds), then each wrist's sensor sits at the
    wrist joint in its :func:`forearm_frame` and reads ``R^T (a_world - g)``.

    Args:
        pose: ``(T, 17, 3)`` Human3.6M joints in metres, world frame z up.
        fs: pose sampling rate in Hz.
        smooth_sigma_s: Gaussian smoothing before differentiation, seconds (``None``/0: none).

    Returns:
        ``(T, 6)`` float32, columns ``[lx, ly, lz, rx, ry, rz]`` in m/s^2, gravity included; finite for finite
        input.
    """
    p = np.asarray(pose, dtype=np.float64)
    if smooth_sigma_s:
        p = gaussian_smooth(p, smooth_sigma_s * fs)
    out = []
    for shoulder, elbow, wrist in ((sk.L_SHOULDER, sk.L_ELBOW, sk.L_WRIST), (sk.R_SHOULDER, sk.R_ELBOW, sk.R_WRIST)):
        rot = forearm_frame(p[:, elbow], p[:, wrist], p[:, shoulder])
        out.append(sensor_acceleration(p[:, wrist], rot, fs, smooth_sigma_s=None))
    return np.concatenate(out, axis=1).astype(np.float32)
