"""Moved to :mod:`mujo.evaluate` (transitional re-export while the callers move)."""
from mujo.evaluate.data import *  # noqa: F401,F403
from mujo.evaluate.calibration import *  # noqa: F401,F403
from mujo.evaluate.zeroshot import *  # noqa: F401,F403
