"""Every use of a Ray internal, each behind one function (the project uses Ray's public APIs everywhere else).

Each function checks that what it relies on is still there and fails with :class:`RayInternalsChanged`, naming the
internal and the pinned Ray version, when an upgrade moved it; ``tests/test_raycompat.py`` runs them all, so an
upgrade that breaks one fails the suite with that message instead of a silent change of behaviour.
"""

from __future__ import annotations

from typing import Any

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


def _train_controller_internals() -> tuple[type, type]:
    """(``ControllerCallback``, ``TrainController``) of Ray Train V2, or :class:`RayInternalsChanged`."""
    try:
        from ray.train.v2._internal.execution.callback import ControllerCallback
        from ray.train.v2._internal.execution.controller import TrainController
    except ImportError as exc:
        raise RayInternalsChanged(
            "ray.train.v2._internal.execution.callback.ControllerCallback or ray.train.v2._internal.execution"
            f".controller.TrainController is gone (pinned ray {PINNED_RAY}): the search can no longer abort a stopped "
            "trial's Train run; find how this Ray lets a Tune trial stop the Train run it started") from exc
    for cls, attr in ((ControllerCallback, "after_controller_start"), (TrainController, "abort")):
        if not callable(getattr(cls, attr, None)):
            raise RayInternalsChanged(f"{cls.__module__}.{cls.__name__}.{attr} is gone (pinned ray {PINNED_RAY}): the "
                                      "search can no longer abort a stopped trial's Train run")
    return ControllerCallback, TrainController


def train_controller_handle_callback(queue: Any) -> Any:
    """A Ray Train run callback (for ``ray.train.RunConfig(callbacks=...)``) that puts the run's controller actor
    handle into ``queue`` (a :class:`ray.util.queue.Queue`) when the controller starts.

    Why an internal: when Tune stops a trial that runs a Train run, it ends the trial's actor, and with it the Train
    controller that actor owns, ungracefully: the controller never shuts its worker group down and the worker group's
    placement group stays reserved (Ray Train's cleaner removes it only through the State API, i.e. where a dashboard
    runs). Aborting the controller first releases it; Train's public ``UserCallback`` has no hook that exposes the
    controller, and no public call aborts a run from another process. Ray passes RunConfig callbacks that are not
    ``UserCallback`` s on to the controller as they are."""
    controller_callback, _ = _train_controller_internals()

    class ControllerHandleCallback(controller_callback):
        def __init__(self, q) -> None:
            self._q = q

        def after_controller_start(self, train_run_context) -> None:  # runs in the controller (an async actor)
            import ray

            # fire and forget: a blocking put would block the controller's event loop
            self._q.actor.put_nowait.remote(ray.get_runtime_context().current_actor)

    return ControllerHandleCallback(queue)


def abort_train_controller(handle: Any, timeout_s: float = 120) -> None:
    """Abort a Ray Train run through its controller's actor handle (from :func:`train_controller_handle_callback`):
    the controller shuts its worker group down (placement group included) and ends itself. Returns when it has
    ended or ``timeout_s`` passed."""
    import ray

    _train_controller_internals()
    try:
        ray.get(handle.abort.remote(), timeout=timeout_s)
    except Exception:  # noqa: BLE001 - abort ends the controller actor, so the call itself fails
        pass


__all__ = ["CREDENTIAL_VARS", "RayInternalsChanged", "abort_train_controller", "stop_tune_copying_credentials",
           "train_controller_handle_callback"]
