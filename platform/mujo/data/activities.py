"""Activity catalogue: the canonical class names and the motion parameters the generator uses.

``ACTIVITIES`` fixes the canonical names and their order (class indices follow it). The first ten are MM-Fit's
exercises (``MMFIT_ACTIVITIES``): "bicep_curls" are alternating standing curls, "tricep_extensions" and
"dumbbell_shoulder_press" are seated. Each :class:`ActivitySpec` gives the base cycle frequency (one repetition,
one stride, one punch pair, ...; the subject's tempo multiplies it), the base posture, and named amplitudes that
:mod:`mujo.data.synth` reads (angles in degrees, distances in metres; the subject's amplitude factor scales the
angle excursions). Free-text label phrasings live in :mod:`mujo.data.text`.

Two vocabularies. ``ACTIVITIES`` (22, the ``activities: all`` of a dataset spec) is the demo's corpus and keeps its
size, so ``make run`` does not grow. ``WIDE_ACTIVITIES`` (``activities: wide``) adds daily living (lying, cycling,
jogging, waist bends, crouching), gym (bench press, hammer curls, upright rows, triceps pushdowns, front raises),
upper-limb rehabilitation (shoulder flexion and abduction, elbow flexion, external rotation, pendulum swings) and
sports (badminton, tennis forehand, jumps front and back), so that the corpus covers the activities of the public
HAR datasets the platform has adapters for (``HAR_COVERAGE``; MyoGym's machine and bench variants and FLAG3D's
unnamed classes are only partly covered).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, Mapping

Posture = Literal["standing", "seated", "prone", "supine"]


@dataclass(frozen=True)
class ActivitySpec:
    """One activity's motion parameters.

    Attributes:
        name: canonical name (an entry of ``ACTIVITIES``).
        freq_hz: base frequency of the activity's cycle in Hz (before the subject's tempo factor).
        posture: base body posture; decides which joints rest on the floor.
        params: named amplitudes read by the activity's motion function (degrees, or metres for ``hop``,
            ``step``, ``tread``, ``sway``).
        description: what the motion looks like, in words.
    """

    name: str
    freq_hz: float
    posture: Posture
    params: Mapping[str, float]
    description: str


def _spec(name: str, freq_hz: float, posture: Posture, description: str, **params: float) -> ActivitySpec:
    return ActivitySpec(name, freq_hz, posture, MappingProxyType(dict(params)), description)


_SPECS: tuple[ActivitySpec, ...] = (
    _spec("squats", 0.45, "standing", "feet planted, knees and hips flex together, trunk leans forward, arms "
          "rise forward for balance (or hands at the chest)", knee=100.0, trunk=35.0, arm=75.0),
    _spec("lunges", 0.40, "standing", "alternating forward lunges: front thigh to horizontal, back knee towards "
          "the floor, trunk upright", front_hip=85.0, front_knee=95.0, back_hip=10.0, back_knee=90.0),
    _spec("bicep_curls", 0.35, "standing", "alternating standing dumbbell curls (one arm cycle per period, the "
          "other arm half a period later)", elbow=120.0, shoulder=12.0),
    _spec("situps", 0.33, "supine", "lying on the back with bent knees, the trunk curls up to ~60 degrees and "
          "back down", trunk=65.0, curl=20.0),
    _spec("pushups", 0.50, "prone", "straight plank pivoting on the toes, hands fixed on the floor, elbows "
          "flare as the chest lowers", depth=0.85),
    _spec("tricep_extensions", 0.40, "seated", "seated overhead two-hand extension: upper arms vertical, "
          "forearms drop behind the head and extend", shoulder=165.0, elbow=115.0),
    _spec("dumbbell_rows", 0.45, "standing", "bent-over one-arm row: trunk pitched forward, the working elbow "
          "pulls up and back, the other hand rests on the knee", trunk=50.0, pull=75.0, elbow=85.0),
    _spec("jumping_jacks", 0.90, "standing", "arms abduct overhead while the legs spread, a small hop at every "
          "transition", arm=150.0, leg=14.0, hop=0.07),
    _spec("dumbbell_shoulder_press", 0.40, "seated", "seated press: upper arms from shoulder height to "
          "overhead, forearms vertical", abd=75.0, elbow=75.0),
    _spec("lateral_shoulder_raises", 0.42, "standing", "near-straight arms raised sideways to shoulder height",
          abd=78.0),
    _spec("walking", 0.90, "standing", "gait cycle with arm swing, forward translation from the stride length",
          hip=20.0, knee_swing=55.0, knee_load=12.0, arm=18.0),
    _spec("running", 1.40, "standing", "running gait with flight phases, arms bent at ~90 degrees pumping",
          hip=30.0, knee_swing=95.0, knee_load=30.0, arm=35.0, hop=0.06),
    _spec("standing", 0.20, "standing", "quiet standing: postural sway, breathing, small arm and head "
          "movements, one of a few arm postures", sway=0.012),
    _spec("sitting", 0.15, "seated", "seated still: hands on the thighs or lap, slow fidgeting", fidget=4.0),
    _spec("stairs_up", 0.75, "standing", "stair ascent: large hip and knee flexion, forward lean, rising "
          "one step per stride half", step=0.17, tread=0.28, hip=28.0, knee_swing=80.0, knee_stance=50.0),
    _spec("stairs_down", 0.85, "standing", "stair descent: the stance knee flexes to lower the body, upright "
          "trunk, descending one step per stride half", step=0.17, tread=0.28, hip=18.0, knee_stance=70.0,
          knee_swing=25.0),
    _spec("jump_rope", 2.00, "standing", "small two-footed hops, elbows bent at the sides, wrists circling "
          "once per hop", hop=0.045, turn=8.0),
    _spec("high_knees", 1.50, "standing", "running in place with the thighs raised to horizontal, arms pumping",
          hip=80.0, knee=95.0, arm=35.0, hop=0.03),
    _spec("arm_circles", 1.00, "standing", "near-straight arms held out sideways, tracing small circles",
          circle=18.0),
    _spec("boxing", 0.90, "standing", "guard stance with alternating jab and cross, trunk rotation and a "
          "bouncing stance", reach=40.0),
    _spec("toe_touches", 0.35, "standing", "from arms overhead, bend at the hips to reach the toes (both hands, "
          "or alternating opposite hand with a twist)", bend=95.0),
    _spec("waving", 1.60, "standing", "one arm raised to the side, the forearm waves side to side", wave=25.0),
)

_WIDE_SPECS: tuple[ActivitySpec, ...] = (
    # daily living
    _spec("lying", 0.20, "supine", "lying on the back, legs extended, arms by the sides or on the belly, breathing "
          "and slow fidgeting", fidget=4.0),
    _spec("cycling", 1.20, "seated", "pedalling on a bicycle: trunk leaning forward, hands on the handlebar, legs "
          "circling half a cycle apart", lean=30.0, hip=25.0, knee=38.0, stride=4.5),
    _spec("jogging", 1.25, "standing", "slow running: shorter strides, lower knee lift and arm pump than running",
          hip=24.0, knee_swing=80.0, knee_load=25.0, arm=28.0, hop=0.04),
    _spec("waist_bends", 0.30, "standing", "bending forward at the waist and back up, legs straight, arms hanging",
          bend=75.0),
    _spec("knees_bending", 0.40, "standing", "crouching: deep knee bends with the trunk leaning forward",
          knee=120.0, trunk=30.0, arm=60.0),
    _spec("jump_front_back", 0.50, "standing", "two-footed jumps forward and back, arms swinging with each jump",
          hop=0.10, reach=0.30),
    # gym
    _spec("bench_press", 0.40, "supine", "lying on the back, both arms press from the chest to vertical",
          depth=1.0),
    _spec("hammer_curls", 0.35, "standing", "both arms curl together with a neutral grip, upper arms at the sides",
          elbow=115.0, shoulder=10.0),
    _spec("upright_rows", 0.40, "standing", "hands pulled up along the body to the chin, elbows leading out and up",
          abd=80.0, elbow=125.0),
    _spec("triceps_pushdowns", 0.45, "standing", "upper arms fixed at the sides, forearms extend down from "
          "horizontal", elbow=95.0),
    _spec("front_raises", 0.40, "standing", "near-straight arms raised forward to shoulder height or above "
          "(MHEALTH's frontal elevation of the arms)", flex=110.0),
    # upper-limb rehabilitation (slow, one affected arm, limited and varying range of motion)
    _spec("shoulder_flexion", 0.20, "standing", "rehabilitation: one straight arm raised forward as far as it goes",
          rom_lo=70.0, rom_hi=150.0),
    _spec("shoulder_abduction", 0.20, "standing", "rehabilitation: one straight arm raised sideways as far as it "
          "goes", rom_lo=60.0, rom_hi=150.0),
    _spec("elbow_flexion", 0.25, "seated", "rehabilitation: seated, one elbow bends and straightens, upper arm at "
          "the side", rom_lo=90.0, rom_hi=140.0),
    _spec("external_rotation", 0.25, "standing", "rehabilitation: elbow bent 90 degrees at the side, the forearm "
          "rotates outwards and back", rom_lo=40.0, rom_hi=80.0),
    _spec("pendulum_swings", 0.50, "standing", "rehabilitation (Codman): trunk bent forward, one arm hangs and "
          "swings in small circles, the other hand rests on a support", circle=15.0, trunk=60.0),
    # sports
    _spec("badminton", 0.50, "standing", "overhead clears and smashes: the racket arm swings from cocked behind "
          "the head to full extension, split steps and lunges", swing=120.0, lunge=35.0),
    _spec("tennis_forehand", 0.45, "standing", "forehand drives: the trunk turns and the racket arm sweeps across "
          "the body from behind", sweep=110.0, twist=40.0),
)

ACTIVITIES: tuple[str, ...] = tuple(s.name for s in _SPECS)
"""The canonical activity names of the default (demo) vocabulary, in class-index order."""

WIDE_ACTIVITIES: tuple[str, ...] = ACTIVITIES + tuple(s.name for s in _WIDE_SPECS)
"""The wide vocabulary (``activities: wide``): the default names first (same class indices), then the rest."""

MMFIT_ACTIVITIES: tuple[str, ...] = ACTIVITIES[:10]
"""MM-Fit's ten exercises (the first ten canonical names)."""

CATALOGUE: Mapping[str, ActivitySpec] = MappingProxyType({s.name: s for s in _SPECS + _WIDE_SPECS})
"""Canonical name -> :class:`ActivitySpec` (every activity the generator knows)."""

HAR_COVERAGE: Mapping[str, Mapping[str, str | None]] = MappingProxyType({
    "mhealth": MappingProxyType({
        "standing_still": "standing", "sitting_and_relaxing": "sitting", "lying_down": "lying", "walking": "walking",
        "climbing_stairs": "stairs_up", "waist_bends_forward": "waist_bends",
        "frontal_elevation_of_arms": "front_raises", "knees_bending": "knees_bending", "cycling": "cycling",
        "jogging": "jogging", "running": "running", "jump_front_and_back": "jump_front_back"}),
    "motionsense": MappingProxyType({
        "stairs_down": "stairs_down", "stairs_up": "stairs_up", "walking": "walking", "jogging": "jogging",
        "sitting": "sitting", "standing": "standing"}),
    "mmfit": MappingProxyType({a: a for a in ACTIVITIES[:10]}),
    "basicmotions": MappingProxyType({"standing": "standing", "walking": "walking", "running": "running",
                                      "badminton": "badminton"}),
    "myogym": MappingProxyType({
        "one_arm_dumbbell_row": "dumbbell_rows", "bench_press": "bench_press", "pushups": "pushups",
        "overhead_triceps_extension": "tricep_extensions", "triceps_pushdown": "triceps_pushdowns",
        "dumbbell_alternate_bicep_curl": "bicep_curls", "hammer_curl": "hammer_curls",
        "upright_barbell_row": "upright_rows", "side_lateral_raise": "lateral_shoulder_raises",
        "front_dumbbell_raise": "front_raises", "seated_dumbbell_shoulder_press": "dumbbell_shoulder_press",
        "concentration_curl": "bicep_curls", "close_grip_barbell_bench_press": "bench_press",
        "seated_cable_rows": None, "wide_grip_pulldown_behind_the_neck": None, "bent_over_barbell_row": None,
        "reverse_grip_bent_over_row": None, "wide_grip_front_pulldown": None, "incline_dumbbell_flyes": None,
        "incline_dumbbell_press": None, "dumbbell_flyes": None, "leverage_chest_press": None,
        "bar_skullcrusher": None, "bench_dip": None, "tricep_dumbbell_kickback": None, "spider_curl": None,
        "incline_hammer_curl": None, "cable_curl": None, "car_drivers": None, "lying_rear_delt_raise": None}),
})
"""Dataset label -> the wide vocabulary's activity that performs it (None: not in the vocabulary). FLAG3D's 60
classes are published as numbers only (datasets/flag3d.yaml), so no mapping is claimed for them."""


def get_activity(name: str) -> ActivitySpec:
    """The spec of a canonical activity name; raises ``KeyError`` naming the known activities otherwise."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"unknown activity {name!r}; known: {', '.join(ACTIVITIES)}") from None
