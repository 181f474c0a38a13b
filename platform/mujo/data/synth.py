"""Procedural 3-D skeletal motion: one raw clip from (activity, subject, seed).

The generator drives joint angles with periodic rhythms and places the 17 Human3.6M joints by forward kinematics,
so bone lengths are exactly the subject's at every frame. Conventions: metres, world z up, 50 Hz by default,
``pose`` float32 ``(T, 17, 3)``.

Body model. In the body frame x points forward, y to the subject's left, z up; the rest pose stands upright with
the arms hanging. Each joint's local rotation turns the bones below it:

* pelvis (root): ``Rz(yaw) Ry(pitch) Rx(roll)``; pitch > 0 tilts the trunk forward (+90: prone, -90: supine);
* spine and thorax: half of the trunk flexion / lateral bend / twist each; neck: nod and turn;
* hip: ``Ry(-flex) Rx(+-abd)``, knee: ``Ry(knee)``; shoulder: ``Ry(-flex) Rx(+-abd) Rz(+-rot)``, elbow:
  ``Ry(-elbow)`` (flexion brings the hand forward with the arm hanging; ``rot`` is external rotation, which
  turns the elbow's flexion plane; the signs mirror for the right side so angles are anatomical on both sides).

A segment's angle from the downward vertical in the sagittal plane equals its local flexion minus the parent's
pitch, which is how activities keep thighs vertical while the trunk bends, or seat the body on a chair.

Placement. After forward kinematics the body is grounded: a soft minimum (1 cm temperature) over the posture's
contact joints minus their clearances (the ankles' height for standing and seated postures, the pelvis' too when
lying on the back) is moved to z = 0. In-place activities anchor the supporting feet horizontally (the ankles'
displacements from their rest positions, weighted towards the lower ankle); locomotion adds forward travel (from
the stride length times the cadence, so the feet barely slide) and, for stairs, a steady climb or descent. Hops
(jumping jacks, jump rope, running's flight) are added on top, then slow postural sway. The clip is turned to a
random facing yaw and shifted by a random start offset; ``camera_yaw`` (the yaw of the camera's optical axis) looks
at the subject from the front, off-axis by N(0, 0.5 rad). Finally every joint coordinate gets Gaussian observation
noise (pose-estimation error; by default the subject's ``noise_std``, 2-8 mm): 5 % of its variance white jitter,
the rest correlated over ~0.1 s, as video pose estimators with temporal models produce.

Rhythm and variation. Each activity's cycle phase advances at the catalogue frequency times the subject's tempo
and a per-clip factor, with a slow sinusoidal tempo drift. Repetitions follow ``0.5 (1 - cos(phi + w sin phi))``
whose warp ``w`` (per subject) makes the two halves of a repetition unequal; excursions scale with the subject's
amplitude factor, a per-clip factor and a slow modulation, and left/right sides differ by the subject's asymmetry.
Subjects also differ in proportions, trunk lean, resting elbow flexion, stance width, handedness and noise, and
some activities pick a style per clip (arm posture while squatting or standing, forward or backward arm circles,
...).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from mujo.data import skeleton as sk
from mujo.data.activities import ActivitySpec, get_activity
from mujo.data.imu import gaussian_smooth

DEG = np.pi / 180.0
TWO_PI = 2.0 * np.pi

_SIDES = (("l", 1.0), ("r", -1.0))
_LIMB_KEYS = ("hip_flex", "hip_abd", "knee", "sh_flex", "sh_abd", "sh_rot", "elbow")
_ANGLE_KEYS = (("pelvis_pitch", "pelvis_roll", "pelvis_yaw", "spine_flex", "spine_lat", "spine_twist", "neck_flex",
                "neck_turn") + tuple(f"{s}_{k}" for s, _ in _SIDES for k in _LIMB_KEYS))
_SOFT_TEMPERATURE_M = 0.01
_ANCHOR_TEMPERATURE_M = 0.02
_WRIST_ABOVE_FLOOR_M = 0.05
_NOISE_WHITE_FRACTION = 0.05  # of the observation-noise variance; the rest is correlated over ~_NOISE_CORRELATION_S
_NOISE_CORRELATION_S = 0.1


@dataclass(frozen=True)
class SubjectParams:
    """A synthetic subject: body proportions (metres) and movement style.

    Attributes:
        subject_id: identifier the parameters were sampled for.
        height: standing height.
        pelvis_half_width, thigh, shank, ankle_height, spine, thorax, neck, head, shoulder_half_width, upper_arm,
            forearm: segment lengths (``ankle_height``: ankle joint above the floor when standing).
        tempo: multiplies every activity's base frequency.
        tempo_drift: relative amplitude of the slow tempo drift within a clip.
        amplitude: multiplies joint-angle excursions.
        phase_warp: warp ``w`` of the repetition profile (unequal up and down phases), |w| < 0.4.
        asymmetry: right/left excursion imbalance (right x (1 + a), left x (1 - a)).
        lean_deg: habitual forward trunk lean.
        elbow_rest_deg: resting elbow flexion.
        stance_deg: hip abduction of the habitual stance.
        right_handed: dominant side for one-arm activities.
        noise_std: observation noise (m) added to every joint coordinate.
    """

    subject_id: str
    height: float
    pelvis_half_width: float
    thigh: float
    shank: float
    ankle_height: float
    spine: float
    thorax: float
    neck: float
    head: float
    shoulder_half_width: float
    upper_arm: float
    forearm: float
    tempo: float
    tempo_drift: float
    amplitude: float
    phase_warp: float
    asymmetry: float
    lean_deg: float
    elbow_rest_deg: float
    stance_deg: float
    right_handed: bool
    noise_std: float

    def rest_offsets(self) -> np.ndarray:
        """``(17, 3)`` bone vectors from each joint's parent in the rest pose (body frame, the root's is zero)."""
        h = self.height
        off = np.zeros((sk.NUM_JOINTS, 3))
        for side, hip, knee, ankle, shoulder, elbow, wrist in ((1.0, sk.L_HIP, sk.L_KNEE, sk.L_ANKLE, sk.L_SHOULDER,
                                                               sk.L_ELBOW, sk.L_WRIST),
                                                              (-1.0, sk.R_HIP, sk.R_KNEE, sk.R_ANKLE, sk.R_SHOULDER,
                                                               sk.R_ELBOW, sk.R_WRIST)):
            off[hip] = (0.0, side * self.pelvis_half_width, 0.0)
            off[knee] = (0.0, 0.0, -self.thigh)
            off[ankle] = (0.0, 0.0, -self.shank)
            off[shoulder] = (0.0, side * self.shoulder_half_width, -0.015 * h)
            off[elbow] = (0.0, 0.0, -self.upper_arm)
            off[wrist] = (0.0, 0.0, -self.forearm)
        off[sk.SPINE] = (0.0, 0.0, self.spine)
        off[sk.THORAX] = (0.0, 0.0, self.thorax)
        off[sk.NECK] = (0.02 * h, 0.0, self.neck)
        off[sk.HEAD] = (-0.01 * h, 0.0, self.head)
        return off


def sample_subject(subject_id: str, seed: int) -> SubjectParams:
    """Sample a subject deterministically from ``(subject_id, seed)``.

    Height ~ N(1.72, 0.09) m clipped to [1.5, 1.95]; each segment is a fixed fraction of the height times its own
    factor N(1, 0.035) clipped to +-10 %; tempo log-normal (sd 0.12) in [0.78, 1.28]; amplitude N(1, 0.09) in
    [0.8, 1.18]; noise 2-8 mm.
    """
    rng = np.random.default_rng([seed, zlib.crc32(subject_id.encode())])
    height = float(np.clip(rng.normal(1.72, 0.09), 1.5, 1.95))

    def segment(fraction: float) -> float:
        return float(height * fraction * np.clip(1.0 + 0.035 * rng.standard_normal(), 0.9, 1.1))

    return SubjectParams(
        subject_id=subject_id,
        height=height,
        pelvis_half_width=segment(0.072),
        thigh=segment(0.245),
        shank=segment(0.246),
        ankle_height=segment(0.039),
        spine=segment(0.14),
        thorax=segment(0.14),
        neck=segment(0.07),
        head=segment(0.075),
        shoulder_half_width=segment(0.105),
        upper_arm=segment(0.170),
        forearm=segment(0.146),
        tempo=float(np.clip(np.exp(rng.normal(0.0, 0.12)), 0.78, 1.28)),
        tempo_drift=float(rng.uniform(0.02, 0.07)),
        amplitude=float(np.clip(rng.normal(1.0, 0.09), 0.8, 1.18)),
        phase_warp=float(rng.uniform(-0.35, 0.35)),
        asymmetry=float(np.clip(rng.normal(0.0, 0.04), -0.1, 0.1)),
        lean_deg=float(rng.normal(3.0, 3.0)),
        elbow_rest_deg=float(rng.uniform(10.0, 24.0)),
        stance_deg=float(rng.uniform(2.0, 8.0)),
        right_handed=bool(rng.random() < 0.88),
        noise_std=float(rng.uniform(0.002, 0.008)),
    )


# --------------------------------------------------------------------------------------------------------------
# Small vectorised helpers
# --------------------------------------------------------------------------------------------------------------

def _rot(axis: int, angle: np.ndarray) -> np.ndarray:
    """``(T, 3, 3)`` rotations by ``angle`` (radians) about world axis 0/1/2 (x/y/z)."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r = np.zeros(angle.shape + (3, 3))
    r[..., axis, axis] = 1.0
    r[..., i, i] = c
    r[..., j, j] = c
    r[..., i, j] = -s
    r[..., j, i] = s
    return r


def _bump(cycle: np.ndarray, mu: float, kappa: float) -> np.ndarray:
    """Periodic bump of height 1 centred at cycle fraction ``mu`` (von Mises shape, width ~1/sqrt(kappa))."""
    return np.exp(kappa * (np.cos(TWO_PI * (cycle - mu)) - 1.0))


def _soft_floor(x: np.ndarray, lo: float, k: float = 3.0) -> np.ndarray:
    """Smooth ``max(x, lo)`` (softplus of width ``k``)."""
    return lo + k * np.logaddexp(0.0, (x - lo) / k)


def _soft_ceiling(x: np.ndarray, hi: float, k: float = 5.0) -> np.ndarray:
    """Smooth ``min(x, hi)``."""
    return hi - k * np.logaddexp(0.0, (hi - x) / k)


def _softmin(z: np.ndarray, tau: float) -> np.ndarray:
    """Soft minimum over the last axis (``-tau log sum exp(-z / tau)``)."""
    m = z.min(axis=-1, keepdims=True)
    return (m - tau * np.log(np.exp(-(z - m) / tau).sum(axis=-1, keepdims=True)))[..., 0]


def _slow_wave(rng: np.random.Generator, t: np.ndarray, freqs: tuple[float, ...]) -> np.ndarray:
    """Mean of unit sinusoids at ``freqs`` (Hz) with random phases (so |value| <= 1)."""
    return sum(np.sin(TWO_PI * f * t + rng.uniform(0.0, TWO_PI)) for f in freqs) / len(freqs)


# --------------------------------------------------------------------------------------------------------------
# Activity motion functions
# --------------------------------------------------------------------------------------------------------------

@dataclass
class _Ctx:
    """What an activity motion function reads: time, cycle phase, amplitude factor, subject, spec, rng."""

    t: np.ndarray  # (T,) seconds
    phase: np.ndarray  # (T,) radians, cumulative cycle phase
    freq: np.ndarray  # (T,) Hz, instantaneous cycle frequency
    amp: np.ndarray  # (T,) amplitude factor
    fs: float
    subject: SubjectParams
    spec: ActivitySpec
    rng: np.random.Generator

    @property
    def p(self) -> dict[str, float]:
        """The activity's named amplitudes (:attr:`ActivitySpec.params`)."""
        return dict(self.spec.params)

    @property
    def cycle(self) -> np.ndarray:
        """Phase in cycles (right-leg / first-arm reference)."""
        return self.phase / TWO_PI

    def rep(self, phase: np.ndarray | None = None) -> np.ndarray:
        """Repetition profile in [0, 1] (0 at phase 0 mod 2 pi), warped by the subject's ``phase_warp``."""
        ph = self.phase if phase is None else phase
        return 0.5 * (1.0 - np.cos(ph + self.subject.phase_warp * np.sin(ph)))

    def side_amp(self, side: str) -> np.ndarray:
        """Amplitude factor of one side, with the subject's left/right asymmetry."""
        return self.amp * (1.0 + (self.subject.asymmetry if side == "r" else -self.subject.asymmetry))

    def travelled(self, metres_per_cycle: np.ndarray | float) -> np.ndarray:
        """Distance covered (metres) when each cycle advances ``metres_per_cycle``."""
        return np.cumsum(np.broadcast_to(metres_per_cycle, self.t.shape) * self.freq) / self.fs


@dataclass
class _Motion:
    """An activity's output: joint angles in degrees plus translations added after grounding."""

    angles: dict[str, np.ndarray]
    forward: np.ndarray | float = 0.0  # metres along the facing direction
    lift: np.ndarray | float = 0.0  # metres added to z (hops, stairs)
    anchor_feet: bool = True
    hands_on_floor: bool = False
    saddle: float | None = None  # metres: the pelvis rests on a seat at this height (cycling), not on the feet


def _base(c: _Ctx) -> dict[str, np.ndarray]:
    """Neutral upright angles with breathing, small head movements and the subject's habitual posture."""
    s, t, rng = c.subject, c.t, c.rng
    a = {k: np.zeros_like(t) for k in _ANGLE_KEYS}
    a["spine_flex"] += s.lean_deg + 1.0 * np.sin(TWO_PI * 0.25 * t + rng.uniform(0.0, TWO_PI))
    a["neck_flex"] += 2.0 * _slow_wave(rng, t, (0.11, 0.23))
    a["neck_turn"] += 4.0 * _slow_wave(rng, t, (0.07, 0.17))
    for side, _ in _SIDES:
        a[f"{side}_elbow"] += s.elbow_rest_deg
        a[f"{side}_hip_abd"] += s.stance_deg
        a[f"{side}_sh_abd"] += 6.0
    return a


def _set_arm(a: dict[str, np.ndarray], side: str, flex: np.ndarray | float, abd: np.ndarray | float,
             rot: np.ndarray | float, elbow: np.ndarray | float) -> None:
    for key, value in (("sh_flex", flex), ("sh_abd", abd), ("sh_rot", rot), ("elbow", elbow)):
        a[f"{side}_{key}"] = np.zeros_like(a[f"{side}_{key}"]) + value


def _seat(a: dict[str, np.ndarray], c: _Ctx) -> None:
    """Seated legs: thighs horizontal whatever the pelvis pitch, shanks near vertical, knees apart."""
    knee = c.rng.uniform(80.0, 105.0)
    spread = c.rng.uniform(3.0, 12.0)
    for side, _ in _SIDES:
        a[f"{side}_hip_flex"] = 90.0 + a["pelvis_pitch"]
        a[f"{side}_knee"] = np.zeros_like(a[f"{side}_knee"]) + knee
        a[f"{side}_hip_abd"] += spread


def _squats(c: _Ctx) -> _Motion:
    a, p, r, amp = _base(c), c.p, c.rep(), c.amp
    knee = 8.0 + p["knee"] * amp * r
    shank_tilt = 0.45 * knee  # shank leans forward (knees over the toes), the thigh takes the rest
    a["pelvis_pitch"] = 5.0 + p["trunk"] * amp * r
    for side, _ in _SIDES:
        a[f"{side}_knee"] = knee
        a[f"{side}_hip_flex"] = knee - shank_tilt + a["pelvis_pitch"]
    hands_at_chest = c.rng.random() < 0.4
    for side, _ in _SIDES:
        if hands_at_chest:
            _set_arm(a, side, 35.0 + 10.0 * r, 0.0, -20.0, 125.0)
        else:
            _set_arm(a, side, 10.0 + p["arm"] * c.side_amp(side) * r, 6.0, 0.0, c.subject.elbow_rest_deg)
    return _Motion(a)


def _lunges(c: _Ctx) -> _Motion:
    a, p, r, amp = _base(c), c.p, c.rep(), c.amp
    left_leads = (np.floor(c.cycle) % 2) == 0  # legs alternate per repetition; r = 0 at the switch
    front = {"hip_flex": p["front_hip"] * amp * r, "knee": p["front_knee"] * amp * r}
    back = {"hip_flex": -p["back_hip"] * amp * r, "knee": p["back_knee"] * amp * r}
    for side, _ in _SIDES:
        leads = left_leads if side == "l" else ~left_leads
        for key in ("hip_flex", "knee"):
            a[f"{side}_{key}"] = np.where(leads, front[key], back[key])
        a[f"{side}_hip_abd"] = a[f"{side}_hip_abd"] * 0.5
    a["pelvis_pitch"] = 3.0 + 5.0 * r
    hands_on_hips = c.rng.random() < 0.5
    for side, _ in _SIDES:
        if hands_on_hips:
            _set_arm(a, side, -10.0, 35.0, -70.0, 100.0)
        else:
            _set_arm(a, side, 8.0 * r, 8.0, 0.0, c.subject.elbow_rest_deg + 10.0 * r)
    return _Motion(a)


def _bicep_curls(c: _Ctx) -> _Motion:
    a, p = _base(c), c.p
    for side, offset in (("l", 0.0), ("r", np.pi)):
        r = c.rep(c.phase + offset)
        _set_arm(a, side, 5.0 + p["shoulder"] * r, 8.0, 10.0,
                 c.subject.elbow_rest_deg + p["elbow"] * c.side_amp(side) * r)
    return _Motion(a)


def _situps(c: _Ctx) -> _Motion:
    a, p, r = _base(c), c.p, c.rep()
    a["pelvis_pitch"] = -88.0 + p["trunk"] * c.amp * r
    a["spine_flex"] += p["curl"] * r - c.subject.lean_deg
    a["neck_flex"] += 10.0 + 15.0 * r
    for side, _ in _SIDES:
        a[f"{side}_hip_flex"] = 130.0 + a["pelvis_pitch"]  # thighs stay at 130 deg from the downward vertical
        a[f"{side}_knee"] = np.zeros_like(a[f"{side}_knee"]) + 100.0
    hands_behind_head = c.rng.random() < 0.5
    for side, _ in _SIDES:
        if hands_behind_head:
            _set_arm(a, side, 150.0, 55.0, 40.0, 145.0)
        else:
            _set_arm(a, side, 25.0, -15.0, -70.0, 130.0)
    return _Motion(a)


def _pushups(c: _Ctx) -> _Motion:
    a, p, s = _base(c), c.p, c.subject
    reach = s.upper_arm + s.forearm
    lateral = 0.35 * s.upper_arm
    top = 0.98 * np.sqrt(reach ** 2 - lateral ** 2)
    bottom = 0.45 * reach
    drop = np.minimum(p["depth"] * c.amp, 1.0) * c.rep()
    shoulder_height = _WRIST_ABOVE_FLOOR_M + top - drop * (top - bottom)
    ankle_to_shoulder = s.shank + s.thigh + s.spine + s.thorax - 0.015 * s.height
    toe_clearance = 1.5 * s.ankle_height
    incline = np.arcsin(np.clip((shoulder_height - toe_clearance) / ankle_to_shoulder, 0.0, 0.95)) / DEG
    a["pelvis_pitch"] = 90.0 - incline
    a["spine_flex"] -= s.lean_deg
    for side, _ in _SIDES:
        a[f"{side}_hip_abd"] = a[f"{side}_hip_abd"] * 0.5
    return _Motion(a, hands_on_floor=True)


def _tricep_extensions(c: _Ctx) -> _Motion:
    a, p, r = _base(c), c.p, c.rep()
    a["pelvis_pitch"] += c.rng.uniform(-5.0, 5.0)
    _seat(a, c)
    for side, _ in _SIDES:
        elbow = _soft_ceiling(15.0 + p["elbow"] * c.side_amp(side) * r, 150.0)
        _set_arm(a, side, p["shoulder"], -4.0, 5.0, elbow)
    return _Motion(a)


def _dumbbell_rows(c: _Ctx) -> _Motion:
    a, p, r, s = _base(c), c.p, c.rep(), c.subject
    a["pelvis_pitch"] += p["trunk"] + c.rng.uniform(-8.0, 8.0)
    for side, _ in _SIDES:
        a[f"{side}_knee"] = np.zeros_like(a[f"{side}_knee"]) + 20.0
        a[f"{side}_hip_flex"] = 10.0 + a["pelvis_pitch"]
    dominant = "r" if s.right_handed else "l"
    working = dominant if c.rng.random() < 0.75 else ("l" if dominant == "r" else "r")
    hanging = a["pelvis_pitch"] + a["spine_flex"]  # the arm points straight down in the world
    for side, sign in _SIDES:
        amp = c.side_amp(side)
        if side == working:
            _set_arm(a, side, hanging - p["pull"] * amp * r, 12.0, 0.0, s.elbow_rest_deg + p["elbow"] * amp * r)
            a["spine_twist"] += sign * 8.0 * r
        else:
            _set_arm(a, side, hanging + 25.0, 10.0, 0.0, 20.0)
    return _Motion(a)


def _jumping_jacks(c: _Ctx) -> _Motion:
    a, p, r = _base(c), c.p, c.rep()
    two = np.cos(2.0 * c.phase)
    for side, _ in _SIDES:
        amp = c.side_amp(side)
        _set_arm(a, side, 5.0, _soft_ceiling(12.0 + p["arm"] * amp * r, 172.0), 0.0, c.subject.elbow_rest_deg)
        a[f"{side}_hip_abd"] += p["leg"] * amp * r
        a[f"{side}_knee"] += 8.0 + 15.0 * np.maximum(0.0, two)  # landings absorbed by the knees
    return _Motion(a, lift=p["hop"] * c.amp * np.maximum(0.0, -two))  # a hop at each transition


def _dumbbell_shoulder_press(c: _Ctx) -> _Motion:
    a, p, r = _base(c), c.p, c.rep()
    _seat(a, c)
    for side, _ in _SIDES:
        amp = c.side_amp(side)
        _set_arm(a, side, 15.0, _soft_ceiling(82.0 + p["abd"] * amp * r, 168.0), 90.0,
                 _soft_floor(95.0 - p["elbow"] * amp * r, 8.0))
    return _Motion(a)


def _lateral_shoulder_raises(c: _Ctx) -> _Motion:
    a, p, r = _base(c), c.p, c.rep()
    for side, _ in _SIDES:
        _set_arm(a, side, 10.0, 10.0 + p["abd"] * c.side_amp(side) * r, 0.0, c.subject.elbow_rest_deg + 5.0)
    return _Motion(a)


def _gait(c: _Ctx, hip_mean: float, hip_peak: float, knee_bumps: tuple[tuple[float, float, float], ...],
          arm: float, arm_elbow: float, lean: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Shared locomotion pattern; returns the angles and the stride length (metres per cycle).

    ``knee_bumps``: (amplitude deg, cycle fraction, kappa); the left leg runs half a cycle after the right one.
    """
    a, p = _base(c), c.p
    for side, shift in (("r", 0.0), ("l", 0.5)):
        cyc = c.cycle + shift
        amp = c.side_amp(side)
        a[f"{side}_hip_flex"] = hip_mean + p["hip"] * amp * np.cos(TWO_PI * (cyc - hip_peak))
        a[f"{side}_knee"] = 4.0 + sum(k * amp * _bump(cyc, mu, kappa) for k, mu, kappa in knee_bumps)
        a[f"{side}_hip_abd"] = a[f"{side}_hip_abd"] * 0.3
        other = "l" if side == "r" else "r"  # the opposite arm swings with this leg
        swing = np.cos(TWO_PI * (cyc - hip_peak))
        _set_arm(a, other, 4.0 + arm * amp * swing, 8.0, 0.0, arm_elbow + 0.2 * arm * swing)
    swing_r = np.cos(TWO_PI * (c.cycle - hip_peak))
    a["pelvis_yaw"] += 4.0 * c.amp * swing_r
    a["spine_twist"] -= 6.0 * c.amp * swing_r
    a["pelvis_roll"] += 2.0 * np.sin(TWO_PI * c.cycle)
    a["spine_flex"] += lean
    leg = c.subject.thigh + c.subject.shank
    hip_amp = p["hip"] * c.amp
    stride = 2.0 * leg * (np.sin((hip_mean + hip_amp) * DEG) + np.sin(np.maximum(hip_amp - hip_mean, 0.0) * DEG))
    return a, stride


def _walking(c: _Ctx) -> _Motion:
    p = c.p
    a, stride = _gait(c, 5.0, 0.95, ((p["knee_load"], 0.13, 12.0), (p["knee_swing"], 0.72, 7.0)),
                      arm=p["arm"], arm_elbow=c.subject.elbow_rest_deg + 6.0, lean=3.0)
    return _Motion(a, forward=c.travelled(stride), anchor_feet=False)


def _running(c: _Ctx) -> _Motion:
    p = c.p
    a, stride = _gait(c, 10.0, 0.9, ((p["knee_load"], 0.15, 10.0), (p["knee_swing"], 0.7, 6.0)),
                      arm=p["arm"], arm_elbow=88.0, lean=8.0)
    flight = p["hop"] * c.amp * np.maximum(0.0, np.cos(2.0 * TWO_PI * (c.cycle - 0.42)))
    return _Motion(a, forward=c.travelled(1.3 * stride), lift=flight, anchor_feet=False)


def _stairs_up(c: _Ctx) -> _Motion:
    p = c.p
    a, _ = _gait(c, p["hip"], 0.9, ((p["knee_stance"], 0.0, 3.0), (p["knee_swing"], 0.7, 6.0)),
                 arm=10.0, arm_elbow=c.subject.elbow_rest_deg + 8.0, lean=8.0)
    a["pelvis_pitch"] += 4.0
    return _Motion(a, forward=c.travelled(2.0 * p["tread"]), lift=c.travelled(2.0 * p["step"]), anchor_feet=False)


def _stairs_down(c: _Ctx) -> _Motion:
    p = c.p
    a, _ = _gait(c, 15.0, 0.85, ((p["knee_stance"], 0.45, 2.5), (p["knee_swing"], 0.8, 8.0)),
                 arm=8.0, arm_elbow=c.subject.elbow_rest_deg + 5.0, lean=-2.0)
    for side, _ in _SIDES:
        a[f"{side}_sh_abd"] += 8.0
    descent = c.travelled(2.0 * p["step"])
    return _Motion(a, forward=c.travelled(2.0 * p["tread"]), lift=descent[-1] - descent, anchor_feet=False)


def _jump_rope(c: _Ctx) -> _Motion:
    a, p = _base(c), c.p
    sin = np.sin(c.phase)
    contact = np.maximum(0.0, -sin)
    a["pelvis_pitch"] += 3.0
    for side, _ in _SIDES:
        a[f"{side}_knee"] += 8.0 + 22.0 * contact
        a[f"{side}_hip_flex"] += 4.0 + 10.0 * contact
        turn = p["turn"] * c.side_amp(side)
        _set_arm(a, side, 12.0 + turn * np.cos(c.phase), 18.0 + 0.75 * turn * sin, 20.0, 75.0 + turn * sin)
    return _Motion(a, lift=p["hop"] * c.amp * np.maximum(0.0, sin))


def _high_knees(c: _Ctx) -> _Motion:
    a, p = _base(c), c.p
    wave = np.sin(c.phase)
    for side, sign in (("r", 1.0), ("l", -1.0)):
        lift = np.maximum(0.0, sign * wave) ** 1.2
        amp = c.side_amp(side)
        a[f"{side}_hip_flex"] = 5.0 + p["hip"] * amp * lift
        a[f"{side}_knee"] = 8.0 + p["knee"] * amp * lift
        a[f"{side}_hip_abd"] = a[f"{side}_hip_abd"] * 0.5
        _set_arm(a, "l" if side == "r" else "r", 5.0 + p["arm"] * amp * sign * wave, 10.0, 0.0, 85.0)
    a["spine_flex"] += 4.0
    return _Motion(a, lift=p["hop"] * c.amp * np.maximum(0.0, np.cos(2.0 * c.phase)))


def _arm_circles(c: _Ctx) -> _Motion:
    a, p = _base(c), c.p
    direction = 1.0 if c.rng.random() < 0.5 else -1.0
    for side, _ in _SIDES:
        circle = p["circle"] * c.side_amp(side)
        _set_arm(a, side, 5.0 + direction * circle * np.sin(c.phase), 85.0 + circle * np.cos(c.phase), 0.0,
                 5.0 + 0.3 * c.subject.elbow_rest_deg)
    return _Motion(a)


def _boxing(c: _Ctx) -> _Motion:
    a, p = _base(c), c.p
    cyc = c.cycle
    n = int(np.ceil(cyc.max())) + 2
    jab = _bump(cyc, 0.0, 6.0) * c.rng.uniform(0.6, 1.1, n)[np.floor(cyc + 0.5).astype(int)]
    cross = _bump(cyc, 0.5, 6.0) * c.rng.uniform(0.6, 1.1, n)[np.floor(cyc).astype(int)]
    a["pelvis_yaw"] -= 25.0  # orthodox stance: left side forward
    a["spine_twist"] += 10.0 + 15.0 * cross - 6.0 * jab
    bounce = 5.0 * np.cos(2.0 * TWO_PI * cyc)
    a["l_hip_flex"] += 15.0
    a["r_hip_flex"] -= 8.0
    for side, punch in (("l", jab), ("r", cross)):
        a[f"{side}_knee"] += 18.0 + bounce
        reach = p["reach"] * c.side_amp(side)
        _set_arm(a, side, 45.0 + reach * punch, 15.0 - 25.0 * punch, -30.0 + 30.0 * punch, 120.0 - 110.0 * punch)
    return _Motion(a)


def _standing(c: _Ctx) -> _Motion:
    a, t, rng = _base(c), c.t, c.rng
    posture = rng.choice(4, p=[0.5, 0.2, 0.15, 0.15])
    drift = _slow_wave(rng, t, (0.05, 0.09))
    for side, _ in _SIDES:
        wiggle = 1.0 * _slow_wave(rng, t, (0.06, 0.13))
        if posture == 1:  # hands clasped in front
            _set_arm(a, side, 18.0 + wiggle, -5.0, -45.0, 75.0)
        elif posture == 2:  # arms crossed
            _set_arm(a, side, 35.0 + wiggle, 5.0, -75.0, 115.0)
        elif posture == 3:  # hands on hips
            _set_arm(a, side, -10.0 + wiggle, 35.0, -70.0, 100.0)
        else:
            a[f"{side}_sh_flex"] += wiggle
    a["pelvis_roll"] += 2.0 * drift  # slow weight shifts
    a["l_knee"] += 3.0 * np.maximum(0.0, drift)
    a["r_knee"] += 3.0 * np.maximum(0.0, -drift)
    return _Motion(a)


def _sitting(c: _Ctx) -> _Motion:
    a, p, t, rng = _base(c), c.p, c.t, c.rng
    a["pelvis_pitch"] += rng.uniform(-12.0, 2.0)
    a["spine_flex"] += rng.uniform(0.0, 15.0)
    _seat(a, c)
    fidget = p["fidget"]
    a["neck_turn"] += 2.0 * fidget * _slow_wave(rng, t, (0.04, 0.11))
    a["spine_twist"] += 0.5 * fidget * _slow_wave(rng, t, (0.03, 0.08))
    flex, elbow, rot = rng.uniform(15.0, 35.0), rng.uniform(50.0, 90.0), rng.uniform(-40.0, 0.0)
    for side, _ in _SIDES:
        _set_arm(a, side, flex + fidget * _slow_wave(rng, t, (0.05, 0.13)), 8.0, rot,
                 elbow + fidget * _slow_wave(rng, t, (0.07, 0.19)))
    return _Motion(a)


def _toe_touches(c: _Ctx) -> _Motion:
    a, p, r = _base(c), c.p, c.rep()
    bend = p["bend"] * c.amp * r
    a["pelvis_pitch"] = 0.75 * bend
    a["spine_flex"] += 0.25 * bend + 10.0 * r
    for side, _ in _SIDES:
        a[f"{side}_hip_flex"] = 3.0 + a["pelvis_pitch"]  # thighs stay vertical
        a[f"{side}_knee"] += 5.0 + 8.0 * r
    if c.rng.random() < 0.5:  # alternating: opposite hand to opposite foot
        a["spine_twist"] += np.where(np.floor(c.cycle) % 2 == 0, 1.0, -1.0) * 25.0 * r
    down = a["pelvis_pitch"] + a["spine_flex"] + 5.0  # arms pointing at the floor
    for side, _ in _SIDES:
        _set_arm(a, side, 165.0 * (1.0 - r) + down * r, 15.0 * (1.0 - r) + 8.0, 0.0, c.subject.elbow_rest_deg)
    return _Motion(a)


def _waving(c: _Ctx) -> _Motion:
    a, p, s = _base(c), c.p, c.subject
    dominant = "r" if s.right_handed else "l"
    side = dominant if c.rng.random() < 0.85 else ("l" if dominant == "r" else "r")
    _set_arm(a, side, 20.0, 105.0 + c.rng.uniform(-10.0, 10.0), 90.0,
             50.0 + p["wave"] * c.side_amp(side) * np.sin(c.phase))
    return _Motion(a)


# ---- the wide vocabulary (activities.WIDE_ACTIVITIES) --------------------------------------------------------

def _other(side: str) -> str:
    return "l" if side == "r" else "r"


def _affected_side(c: _Ctx) -> str:
    """The arm a one-arm exercise works: the dominant one in 70 % of clips."""
    dominant = "r" if c.subject.right_handed else "l"
    return dominant if c.rng.random() < 0.7 else _other(dominant)


def _lying(c: _Ctx) -> _Motion:
    a, p, t, rng = _base(c), c.p, c.t, c.rng
    a["pelvis_pitch"] = -88.0 + rng.uniform(-3.0, 3.0)
    a["spine_flex"] -= c.subject.lean_deg
    fidget = p["fidget"]
    on_belly = rng.random() < 0.3
    for side, _ in _SIDES:
        a[f"{side}_hip_flex"] = np.zeros_like(t) + rng.uniform(0.0, 8.0)
        a[f"{side}_knee"] = np.zeros_like(t) + rng.uniform(3.0, 15.0) + 0.5 * fidget * _slow_wave(rng, t, (0.04, 0.1))
        if on_belly:
            _set_arm(a, side, 25.0, 12.0, -40.0, 95.0 + fidget * _slow_wave(rng, t, (0.05, 0.12)))
        else:
            _set_arm(a, side, fidget * _slow_wave(rng, t, (0.05, 0.13)), 10.0, 0.0, c.subject.elbow_rest_deg)
    return _Motion(a)


def _cycling(c: _Ctx) -> _Motion:
    a, p, t, rng = _base(c), c.p, c.t, c.rng
    a["pelvis_pitch"] += p["lean"] + rng.uniform(-8.0, 8.0)
    a["pelvis_roll"] += 2.0 * np.sin(c.phase)
    for side, offset in (("r", 0.0), ("l", np.pi)):
        amp = c.side_amp(side)
        a[f"{side}_hip_flex"] = 60.0 + a["pelvis_pitch"] + p["hip"] * amp * np.sin(c.phase + offset)
        a[f"{side}_knee"] = 75.0 + p["knee"] * amp * np.sin(c.phase + offset + 0.5 * np.pi)
        a[f"{side}_hip_abd"] = a[f"{side}_hip_abd"] * 0.3
    road = 1.5 * _slow_wave(rng, t, (1.7, 2.9, 4.3))  # road and handlebar vibration, degrees
    reach = rng.uniform(55.0, 75.0)
    for side, _ in _SIDES:
        _set_arm(a, side, reach - a["pelvis_pitch"] + road, 12.0, -15.0, rng.uniform(15.0, 35.0) + road)
    saddle = 0.97 * (c.subject.thigh + c.subject.shank) + c.subject.ankle_height  # the stretched leg just reaches
    return _Motion(a, forward=c.travelled(p["stride"]), anchor_feet=False, saddle=saddle)


def _waist_bends(c: _Ctx) -> _Motion:
    a, p, r = _base(c), c.p, c.rep()
    bend = p["bend"] * c.amp * r
    a["pelvis_pitch"] = 0.6 * bend
    a["spine_flex"] += 0.4 * bend
    for side, _ in _SIDES:
        a[f"{side}_hip_flex"] = 2.0 + a["pelvis_pitch"]
        _set_arm(a, side, 0.85 * (a["pelvis_pitch"] + a["spine_flex"]), 8.0, 0.0, c.subject.elbow_rest_deg)
    return _Motion(a)


def _jump_front_back(c: _Ctx) -> _Motion:
    a, p = _base(c), c.p
    two = np.cos(2.0 * c.phase)
    crouch = np.maximum(0.0, two)
    for side, _ in _SIDES:
        a[f"{side}_knee"] += 10.0 + 35.0 * crouch
        a[f"{side}_hip_flex"] += 8.0 + 30.0 * crouch
        _set_arm(a, side, 10.0 + 50.0 * c.side_amp(side) * np.sin(2.0 * c.phase), 8.0, 0.0, 25.0)
    a["pelvis_pitch"] += 15.0 * crouch
    position = p["reach"] * c.amp * 0.5 * (1.0 - np.cos(c.phase))
    return _Motion(a, forward=position, lift=p["hop"] * c.amp * np.maximum(0.0, -two))


def _bench_press(c: _Ctx) -> _Motion:
    a, p, r, t = _base(c), c.p, c.rep(), c.t
    a["pelvis_pitch"] = -88.0
    a["spine_flex"] -= c.subject.lean_deg
    for side, _ in _SIDES:
        a[f"{side}_hip_flex"] = np.zeros_like(t) + 40.0  # knees up, feet on the floor
        a[f"{side}_knee"] = np.zeros_like(t) + 85.0
        d = np.minimum(p["depth"] * c.side_amp(side), 1.0) * r
        _set_arm(a, side, 90.0 - 80.0 * d, 10.0 + 60.0 * d, 0.0, 5.0 + 90.0 * d)
    return _Motion(a)


def _hammer_curls(c: _Ctx) -> _Motion:
    a, p, r = _base(c), c.p, c.rep()
    for side, _ in _SIDES:
        _set_arm(a, side, 4.0 + p["shoulder"] * r, 6.0, 30.0,
                 c.subject.elbow_rest_deg + p["elbow"] * c.side_amp(side) * r)
    return _Motion(a)


def _upright_rows(c: _Ctx) -> _Motion:
    a, p, r = _base(c), c.p, c.rep()
    for side, _ in _SIDES:
        amp = c.side_amp(side)
        _set_arm(a, side, 12.0 + 15.0 * r, 8.0 + p["abd"] * amp * r, -25.0 * r,
                 c.subject.elbow_rest_deg + p["elbow"] * amp * r)
    return _Motion(a)


def _triceps_pushdowns(c: _Ctx) -> _Motion:
    a, p, r = _base(c), c.p, c.rep()
    a["spine_flex"] += 10.0
    for side, _ in _SIDES:
        _set_arm(a, side, 8.0, 8.0, -10.0, 100.0 - p["elbow"] * c.side_amp(side) * r)
    return _Motion(a)


def _front_raises(c: _Ctx) -> _Motion:
    a, p, r = _base(c), c.p, c.rep()
    alternating = c.rng.random() < 0.3
    for side, offset in (("l", 0.0), ("r", np.pi if alternating else 0.0)):
        rs = c.rep(c.phase + offset)
        _set_arm(a, side, 5.0 + p["flex"] * c.side_amp(side) * rs, 8.0, 0.0, c.subject.elbow_rest_deg)
    return _Motion(a)


def _rehab_arm(c: _Ctx, key: str) -> _Motion:
    """One affected arm moves slowly through a limited range of motion drawn per clip; the other rests."""
    a, p, r = _base(c), c.p, c.rep()
    side = _affected_side(c)
    rom = c.rng.uniform(p["rom_lo"], p["rom_hi"]) * c.side_amp(side)
    if key == "shoulder_flexion":
        _set_arm(a, side, 5.0 + rom * r, 8.0, 0.0, 8.0)
    elif key == "shoulder_abduction":
        _set_arm(a, side, 10.0, 8.0 + rom * r, 10.0 * r, 8.0)
    elif key == "elbow_flexion":
        a["pelvis_pitch"] += c.rng.uniform(-5.0, 5.0)
        _seat(a, c)
        _set_arm(a, side, 10.0, 8.0, 0.0, 10.0 + rom * r)
    else:  # external rotation: the forearm swings outwards about the upper arm
        _set_arm(a, side, 5.0, 6.0, -10.0 + rom * r, 90.0)
    return _Motion(a)


def _pendulum_swings(c: _Ctx) -> _Motion:
    a, p = _base(c), c.p
    a["pelvis_pitch"] += p["trunk"] + c.rng.uniform(-10.0, 10.0)
    for side, _ in _SIDES:
        a[f"{side}_knee"] = np.zeros_like(a[f"{side}_knee"]) + 15.0
        a[f"{side}_hip_flex"] = 8.0 + a["pelvis_pitch"]
    side = _affected_side(c)
    hanging = a["pelvis_pitch"] + a["spine_flex"]
    circle = p["circle"] * c.side_amp(side)
    direction = 1.0 if c.rng.random() < 0.5 else -1.0
    _set_arm(a, side, hanging + circle * np.sin(c.phase), 10.0 + direction * circle * np.cos(c.phase), 0.0, 12.0)
    _set_arm(a, _other(side), hanging + 35.0, 10.0, 0.0, 25.0)  # the hand on a table or knee
    return _Motion(a)


def _badminton(c: _Ctx) -> _Motion:
    a, p, rng = _base(c), c.p, c.rng
    side = _affected_side(c)
    cyc = c.cycle
    n = int(np.ceil(cyc.max())) + 2
    strength = rng.uniform(0.7, 1.1, n)[np.floor(cyc).astype(int)]
    cock = _bump(cyc, 0.35, 8.0)  # racket cocked behind the head
    hit = _bump(cyc, 0.5, 30.0) * strength  # fast extension at the shuttle
    swing = p["swing"] * c.side_amp(side)
    _set_arm(a, side, 40.0 + 0.5 * swing * cock + 0.9 * swing * hit, 30.0 + 20.0 * cock, 60.0 * cock - 30.0 * hit,
             90.0 + 30.0 * cock - 80.0 * hit)
    _set_arm(a, _other(side), 30.0 + 60.0 * cock, 20.0, 0.0, 30.0)
    sign = 1.0 if side == "l" else -1.0
    a["spine_twist"] += sign * (15.0 * cock - 20.0 * hit)
    lunge = p["lunge"] * _bump(cyc, 0.85, 6.0) * rng.uniform(0.3, 1.0, n)[np.floor(cyc).astype(int)]
    lead = "r" if side == "r" else "l"
    a[f"{lead}_hip_flex"] += lunge
    a[f"{lead}_knee"] += 1.5 * lunge
    a[f"{_other(lead)}_knee"] += 10.0 + 0.5 * lunge
    split = 0.03 * _bump(cyc, 0.05, 20.0)  # the split step before each shot
    return _Motion(a, lift=split, forward=0.15 * _bump(cyc, 0.85, 6.0))


def _tennis_forehand(c: _Ctx) -> _Motion:
    a, p, rng = _base(c), c.p, c.rng
    side = _affected_side(c)
    sign = 1.0 if side == "l" else -1.0
    cyc = c.cycle
    back = _bump(cyc, 0.3, 4.0)  # take-back
    stroke = _bump(cyc, 0.55, 20.0)  # the swing through the ball
    sweep = p["sweep"] * c.side_amp(side)
    a["spine_twist"] += sign * p["twist"] * (back - stroke)
    for s_, _ in _SIDES:
        a[f"{s_}_knee"] += 20.0 + 10.0 * back
        a[f"{s_}_hip_flex"] += 12.0
    _set_arm(a, side, -25.0 * back + 0.8 * sweep * stroke, 35.0 + 20.0 * back, -20.0 * back + 30.0 * stroke,
             35.0 + 20.0 * back)
    _set_arm(a, _other(side), 40.0 * back + 10.0, 25.0, 0.0, 60.0)
    return _Motion(a, forward=0.1 * rng.uniform(0.5, 1.0) * stroke)


_MOTIONS: dict[str, Callable[[_Ctx], _Motion]] = {
    "squats": _squats, "lunges": _lunges, "bicep_curls": _bicep_curls, "situps": _situps, "pushups": _pushups,
    "tricep_extensions": _tricep_extensions, "dumbbell_rows": _dumbbell_rows, "jumping_jacks": _jumping_jacks,
    "dumbbell_shoulder_press": _dumbbell_shoulder_press, "lateral_shoulder_raises": _lateral_shoulder_raises,
    "walking": _walking, "running": _running, "standing": _standing, "sitting": _sitting,
    "stairs_up": _stairs_up, "stairs_down": _stairs_down, "jump_rope": _jump_rope, "high_knees": _high_knees,
    "arm_circles": _arm_circles, "boxing": _boxing, "toe_touches": _toe_touches, "waving": _waving,
    # the wide vocabulary
    "lying": _lying, "cycling": _cycling, "jogging": _running, "waist_bends": _waist_bends,
    "knees_bending": _squats, "jump_front_back": _jump_front_back, "bench_press": _bench_press,
    "hammer_curls": _hammer_curls, "upright_rows": _upright_rows, "triceps_pushdowns": _triceps_pushdowns,
    "front_raises": _front_raises, "shoulder_flexion": lambda c: _rehab_arm(c, "shoulder_flexion"),
    "shoulder_abduction": lambda c: _rehab_arm(c, "shoulder_abduction"),
    "elbow_flexion": lambda c: _rehab_arm(c, "elbow_flexion"),
    "external_rotation": lambda c: _rehab_arm(c, "external_rotation"), "pendulum_swings": _pendulum_swings,
    "badminton": _badminton, "tennis_forehand": _tennis_forehand,
}


# --------------------------------------------------------------------------------------------------------------
# Kinematics and placement
# --------------------------------------------------------------------------------------------------------------

def _forward_kinematics(subject: SubjectParams, angles_deg: dict[str, np.ndarray | float],
                        n: int) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions ``(n, 17, 3)`` (root at the origin, body frame) and global rotations ``(n, 17, 3, 3)``
    from joint angles in degrees (arrays of length ``n`` or scalars)."""
    a = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)) * DEG for k, v in angles_deg.items()}
    for side, _ in _SIDES:
        a[f"{side}_knee"] = _soft_floor(a[f"{side}_knee"], 0.0, 3.0 * DEG)
        a[f"{side}_elbow"] = _soft_floor(a[f"{side}_elbow"], 0.0, 3.0 * DEG)
    local: dict[int, np.ndarray] = {
        sk.PELVIS: _rot(2, a["pelvis_yaw"]) @ _rot(1, a["pelvis_pitch"]) @ _rot(0, a["pelvis_roll"]),
        sk.NECK: _rot(2, a["neck_turn"]) @ _rot(1, a["neck_flex"]),
    }
    trunk = _rot(1, a["spine_flex"] / 2) @ _rot(0, -a["spine_lat"] / 2) @ _rot(2, a["spine_twist"] / 2)
    local[sk.SPINE] = local[sk.THORAX] = trunk
    for (side, sign), hip, knee, shoulder, elbow in zip(_SIDES, (sk.L_HIP, sk.R_HIP), (sk.L_KNEE, sk.R_KNEE),
                                                        (sk.L_SHOULDER, sk.R_SHOULDER), (sk.L_ELBOW, sk.R_ELBOW)):
        local[hip] = _rot(1, -a[f"{side}_hip_flex"]) @ _rot(0, sign * a[f"{side}_hip_abd"])
        local[knee] = _rot(1, a[f"{side}_knee"])
        local[shoulder] = (_rot(1, -a[f"{side}_sh_flex"]) @ _rot(0, sign * a[f"{side}_sh_abd"])
                           @ _rot(2, sign * a[f"{side}_sh_rot"]))
        local[elbow] = _rot(1, -a[f"{side}_elbow"])
    offsets = subject.rest_offsets()
    pos = np.zeros((n, sk.NUM_JOINTS, 3))
    glob = np.zeros((n, sk.NUM_JOINTS, 3, 3))
    glob[:, sk.PELVIS] = local[sk.PELVIS]
    for j in range(1, sk.NUM_JOINTS):
        parent = sk.PARENTS[j]
        pos[:, j] = pos[:, parent] + glob[:, parent] @ offsets[j]
        glob[:, j] = glob[:, parent] @ local[j] if j in local else glob[:, parent]
    return pos, glob


def _contacts(spec: ActivitySpec, subject: SubjectParams) -> tuple[tuple[int, float], ...]:
    """(joint, clearance above the floor) pairs that can carry the body in the activity's posture."""
    ankles = ((sk.L_ANKLE, subject.ankle_height), (sk.R_ANKLE, subject.ankle_height))
    if spec.posture == "prone":
        return tuple((j, 1.5 * h) for j, h in ankles)  # on the toes
    if spec.posture == "supine":
        return ankles + ((sk.PELVIS, 0.1 * subject.height / 1.72),)
    return ankles


def _floor_level(pos: np.ndarray, contacts: tuple[tuple[int, float], ...]) -> np.ndarray:
    """``(T,)`` floor height in FK coordinates: soft minimum of the contact joints minus their clearances."""
    z = np.stack([pos[:, j, 2] - clearance for j, clearance in contacts], axis=-1)
    return _softmin(z, _SOFT_TEMPERATURE_M)


def _arm_to_target(subject: SubjectParams, shoulder: np.ndarray, target: np.ndarray, thorax_rot: np.ndarray,
                   hint: np.ndarray, sign: float) -> tuple[np.ndarray, ...]:
    """Two-link inverse kinematics: shoulder angles (flex, abd, rot) and elbow (degrees) placing the wrist at
    ``target``, the elbow bending towards ``hint`` (all ``(T, 3)`` in FK coordinates)."""
    u, f = subject.upper_arm, subject.forearm
    d_vec = target - shoulder
    w = d_vec / np.linalg.norm(d_vec, axis=-1, keepdims=True)
    d = np.clip(np.linalg.norm(d_vec, axis=-1, keepdims=True), abs(u - f) + 1e-3, 0.999 * (u + f))
    cos_a = np.clip((u ** 2 + d ** 2 - f ** 2) / (2.0 * u * d), -1.0, 1.0)
    b = hint - np.sum(hint * w, axis=-1, keepdims=True) * w
    b /= np.linalg.norm(b, axis=-1, keepdims=True)
    upper_dir = cos_a * w + np.sqrt(1.0 - cos_a ** 2) * b
    fore_dir = (d * w - u * upper_dir) / f
    v = np.einsum("tji,tj->ti", thorax_rot, upper_dir)  # into the thorax frame
    q = np.einsum("tji,tj->ti", thorax_rot, fore_dir)
    abd = np.arcsin(np.clip(sign * v[:, 1], -1.0, 1.0))
    flex = np.arctan2(v[:, 0], -v[:, 2])
    q_arm = np.einsum("tji,tj->ti", _rot(1, -flex) @ _rot(0, sign * abd), q)
    elbow = np.arccos(np.clip(-q_arm[:, 2], -1.0, 1.0))
    rot = np.arctan2(sign * q_arm[:, 1], q_arm[:, 0])
    return flex / DEG, abd / DEG, rot / DEG, elbow / DEG


def _hands_to_floor(subject: SubjectParams, angles: dict[str, np.ndarray], pos: np.ndarray, glob: np.ndarray,
                    floor: np.ndarray) -> None:
    """Set the arm angles so the wrists rest on fixed floor points beside and just ahead of the shoulders."""
    for (side, sign), shoulder in zip(_SIDES, (sk.L_SHOULDER, sk.R_SHOULDER)):
        sh = pos[:, shoulder]
        target = np.empty_like(sh)
        target[:, 0] = sh[:, 0].mean() + 0.02
        target[:, 1] = sh[:, 1].mean() + sign * 0.35 * subject.upper_arm
        target[:, 2] = floor + _WRIST_ABOVE_FLOOR_M
        hint = np.broadcast_to(np.array([-0.4, sign, 0.4]), sh.shape)  # elbows flare out and back
        flex, abd, rot, elbow = _arm_to_target(subject, sh, target, glob[:, sk.THORAX], hint, sign)
        _set_arm(angles, side, flex, abd, rot, elbow)


def _observation_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_frames: float) -> np.ndarray:
    """Unit-variance pose-estimation noise: white jitter plus temporally correlated error.

    ``_NOISE_WHITE_FRACTION`` of the variance is white; the rest is white noise Gaussian-smoothed over
    ``sigma_frames`` and rescaled to unit variance (video pose estimators with temporal models err smoothly).
    """
    white = rng.standard_normal(shape)
    correlated = gaussian_smooth(rng.standard_normal(shape), sigma_frames)
    if sigma_frames > 0 and shape[0] > 1:
        correlated *= np.sqrt(2.0 * np.sqrt(np.pi) * sigma_frames)  # std of smoothed unit white noise
    return np.sqrt(_NOISE_WHITE_FRACTION) * white + np.sqrt(1.0 - _NOISE_WHITE_FRACTION) * correlated


def _place(pos: np.ndarray, motion: _Motion, subject: SubjectParams, floor: np.ndarray) -> np.ndarray:
    """Ground, anchor the feet, and add the activity's translations (still in the body-aligned frame)."""
    out = pos.copy()
    out[..., 2] -= floor[:, None]
    if motion.anchor_feet:
        ankles = out[:, [sk.L_ANKLE, sk.R_ANKLE]]
        weights = np.exp(-(ankles[..., 2] - ankles[..., 2].min(axis=1, keepdims=True)) / _ANCHOR_TEMPERATURE_M)
        weights /= weights.sum(axis=1, keepdims=True)
        rest = np.array([[0.0, subject.pelvis_half_width], [0.0, -subject.pelvis_half_width]])
        anchor = np.sum(weights[..., None] * (ankles[..., :2] - rest), axis=1)
        out[..., :2] -= anchor[:, None]
    out[..., 0] += np.asarray(motion.forward)[..., None] if np.ndim(motion.forward) else motion.forward
    out[..., 2] += np.asarray(motion.lift)[..., None] if np.ndim(motion.lift) else motion.lift
    return out


def generate_motion(activity: str, subject: SubjectParams, duration_s: float, seed: int, fs: float = 50.0, *,
                    noise_std: float | None = None) -> dict:
    """Generate one clip of ``activity`` performed by ``subject``.

    Args:
        activity: a canonical activity name (:data:`mujo.data.activities.WIDE_ACTIVITIES`).
        subject: from :func:`sample_subject`.
        duration_s: clip length in seconds (at least one frame).
        seed: clip seed; the output is a deterministic function of (activity, subject, duration, seed, fs).
        fs: frame rate in Hz.
        noise_std: observation noise per joint coordinate in metres (default: the subject's ``noise_std``).

    Returns:
        ``{"pose": float32 (T, 17, 3) metres z up, "fs": fs, "camera_yaw": float, "facing_yaw": float,
        "activity": str, "subject": str}``; yaws in radians in [-pi, pi), ``camera_yaw`` being the direction of
        the camera's optical axis and ``facing_yaw`` the subject's facing (and travel) direction.
    """
    spec = get_activity(activity)
    rng = np.random.default_rng([seed, zlib.crc32(activity.encode()), zlib.crc32(subject.subject_id.encode())])
    n = max(1, int(round(duration_s * fs)))
    t = np.arange(n) / fs
    drift = subject.tempo_drift * np.sin(TWO_PI * t / rng.uniform(15.0, 40.0) + rng.uniform(0.0, TWO_PI))
    freq = spec.freq_hz * subject.tempo * rng.uniform(0.93, 1.07) * (1.0 + drift)
    phase = rng.uniform(0.0, TWO_PI) + TWO_PI * (np.cumsum(freq) - freq[0]) / fs
    amp = (subject.amplitude * rng.uniform(0.93, 1.07)
           * (1.0 + 0.05 * np.sin(TWO_PI * rng.uniform(0.03, 0.1) * t + rng.uniform(0.0, TWO_PI))))
    ctx = _Ctx(t=t, phase=phase, freq=freq, amp=amp, fs=fs, subject=subject, spec=spec, rng=rng)
    motion = _MOTIONS[activity](ctx)

    contacts = _contacts(spec, subject)
    pos, glob = _forward_kinematics(subject, motion.angles, n)
    if motion.hands_on_floor:
        _hands_to_floor(subject, motion.angles, pos, glob, _floor_level(pos, contacts))
        pos, glob = _forward_kinematics(subject, motion.angles, n)
    floor = _floor_level(pos, contacts) if motion.saddle is None else pos[:, sk.PELVIS, 2] - motion.saddle
    pos = _place(pos, motion, subject, floor)

    sway = {"standing": spec.params.get("sway", 0.004), "seated": 0.002}.get(spec.posture, 0.0)
    pos[..., :2] += sway * np.stack([_slow_wave(rng, t, (0.13, 0.31)), _slow_wave(rng, t, (0.11, 0.27))],
                                    axis=-1)[:, None, :]
    facing = float(rng.uniform(-np.pi, np.pi))
    camera = float((facing + np.pi + rng.normal(0.0, 0.5) + np.pi) % TWO_PI - np.pi)
    start = rng.uniform(-0.3, 0.3, 2)
    world = pos @ _rot(2, np.array(facing)).T
    world[..., :2] += start
    sigma = subject.noise_std if noise_std is None else noise_std
    if sigma > 0:
        world += sigma * _observation_noise(rng, world.shape, _NOISE_CORRELATION_S * fs)
    return {"pose": world.astype(np.float32), "fs": float(fs), "camera_yaw": camera, "facing_yaw": facing,
            "activity": activity, "subject": subject.subject_id}
