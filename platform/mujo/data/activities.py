"""Activity catalogue: the canonical class names and the motion parameters the generator uses.

``ACTIVITIES`` fixes the canonical names and their order (class indices follow it). The first ten are MM-Fit's
exercises (``MMFIT_ACTIVITIES``): "bicep_curls" are alternating standing curls, "tricep_extensions" and
"dumbbell_shoulder_press" are seated. Each :class:`ActivitySpec` gives the base cycle frequency (one repetition,
one stride, one punch pair, ...; the subject's tempo multiplies it), the base posture, and named amplitudes that
:mod:`mujo.data.synth` reads (angles in degrees, distances in metres; the subject's amplitude factor scales the
angle excursions). Free-text label phrasings live in :mod:`mujo.data.text`.
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

ACTIVITIES: tuple[str, ...] = tuple(s.name for s in _SPECS)
"""The canonical activity names, in class-index order."""

MMFIT_ACTIVITIES: tuple[str, ...] = ACTIVITIES[:10]
"""MM-Fit's ten exercises (the first ten canonical names)."""

CATALOGUE: Mapping[str, ActivitySpec] = MappingProxyType({s.name: s for s in _SPECS})
"""Canonical name -> :class:`ActivitySpec`."""


def get_activity(name: str) -> ActivitySpec:
    """The spec of a canonical activity name; raises ``KeyError`` naming the known activities otherwise."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"unknown activity {name!r}; known: {', '.join(ACTIVITIES)}") from None
