"""Moved to :mod:`mujo.evaluate.calibration` (transitional re-export while the callers move)."""
from mujo.evaluate.calibration import *  # noqa: F401,F403
