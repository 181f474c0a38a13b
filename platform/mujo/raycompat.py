"""Every use of a Ray internal, each behind one function (the project uses Ray's public APIs everywhere else).

Each function checks that what it relies on is still there and fails with :class:`RayInternalsChanged`, naming the
internal and the pinned Ray version, when an upgrade moved it; ``tests/test_raycompat.py`` runs them all, so an
upgrade that breaks one fails the suite with that message instead of a silent change of behaviour.
"""

from __future__ import annotations

CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN")
PINNED_RAY = "2.60.0"


class RayInternalsChanged(RuntimeError):
    """A Ray internal this project relies on is gone or changed shape (a Ray upgrade)."""


def stop_tune_copying_credentials() -> None:
    """Ray Tune copies the driver's ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN`` into
    every trial actor's runtime environment (``ray.tune.execution.class_cache.ENV_VARS_TO_PROPAGATE``), and Ray's
    runtime-env agent writes runtime environments into its log file at INFO: secrets in a world-readable file. There
    is no public switch. Remove those names from the set; trial processes then get credentials the way every other
    Ray worker of the platform does (the node's environment or its instance profile). Idempotent."""
    try:
        from ray.tune.execution import class_cache
    except ImportError as exc:
        raise RayInternalsChanged(f"ray.tune.execution.class_cache is gone (pinned ray {PINNED_RAY}): check how this "
                                  "Ray propagates AWS credentials to Tune trials before upgrading") from exc
    names = getattr(class_cache, "ENV_VARS_TO_PROPAGATE", None)
    if not isinstance(names, (set, frozenset)):
        raise RayInternalsChanged("ray.tune.execution.class_cache.ENV_VARS_TO_PROPAGATE is no longer a set (pinned "
                                  f"ray {PINNED_RAY}): check how this Ray propagates AWS credentials to Tune trials")
    class_cache.ENV_VARS_TO_PROPAGATE = frozenset(names) - set(CREDENTIAL_VARS)


__all__ = ["CREDENTIAL_VARS", "RayInternalsChanged", "stop_tune_copying_credentials"]
