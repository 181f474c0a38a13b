"""The Ray internals the project relies on (each behind one function in ``mujo.raycompat``) are still there: a Ray
upgrade that moves one fails here, with the message naming it, not silently in production."""

from __future__ import annotations

import inspect
import os

import pytest

from mujo import raycompat


def test_tune_no_longer_copies_credentials_into_trial_runtime_envs(monkeypatch):
    from ray.tune.execution import class_cache

    for name in raycompat.CREDENTIAL_VARS:
        monkeypatch.setenv(name, f"mujo-fake-{name.lower()}")
    raycompat.stop_tune_copying_credentials()
    raycompat.stop_tune_copying_credentials()  # idempotent
    assert not set(raycompat.CREDENTIAL_VARS) & set(class_cache.ENV_VARS_TO_PROPAGATE)

    class Trainable:
        pass

    remote = class_cache._ActorClassCache().get(Trainable)
    env_vars = (remote._default_options.get("runtime_env") or {}).get("env_vars") or {}
    assert not [v for v in env_vars.values() if "mujo-fake" in v], env_vars
    assert env_vars.get("PL_DISABLE_FORK") == "1"  # the rest of Tune's propagation is untouched
    assert os.environ["AWS_SECRET_ACCESS_KEY"].startswith("mujo-fake")  # the driver keeps its own environment


def test_train_controller_callback_reaches_the_controller_and_abort_exists(tmp_path):
    """The search aborts a stopped trial's Train run through the controller (see
    ``raycompat.train_controller_handle_callback``): the callback must be a controller callback that Train passes on
    from the RunConfig to its controller, and the controller must still have ``abort``."""
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.execution.callback import ControllerCallback
    from ray.train.v2._internal.execution.controller import TrainController

    callback = raycompat.train_controller_handle_callback(object())
    assert isinstance(callback, ControllerCallback)
    assert type(callback).after_controller_start is not ControllerCallback.after_controller_start
    trainer = TorchTrainer(lambda: None, scaling_config=ray.train.ScalingConfig(num_workers=1),
                           run_config=ray.train.RunConfig(name="raycompat", storage_path=str(tmp_path),
                                                          callbacks=[callback]))
    assert callback in trainer._create_default_callbacks(), (
        f"ray {raycompat.PINNED_RAY} passed RunConfig callbacks that are not UserCallbacks on to the Train controller;"
        " this Ray does not: the search can no longer abort a stopped trial's Train run")
    assert inspect.iscoroutinefunction(TrainController.abort), "TrainController.abort changed shape"


def test_a_missing_train_internal_is_named(monkeypatch):
    from ray.train.v2._internal.execution import callback

    monkeypatch.delattr(callback.ControllerCallback, "after_controller_start")
    with pytest.raises(raycompat.RayInternalsChanged, match="ControllerCallback.after_controller_start is gone") as err:
        raycompat.train_controller_handle_callback(object())
    assert raycompat.PINNED_RAY in str(err.value)
