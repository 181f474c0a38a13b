"""The Ray internals the project relies on (each behind one function in ``mujo.raycompat``) are still there: a Ray
upgrade that moves one fails here, with the message naming it, not silently in production."""

from __future__ import annotations

import os

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
