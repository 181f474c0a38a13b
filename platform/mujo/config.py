"""Typed, validated configuration: the one place where every setting of every stage is declared.

Configs are YAML files mirroring :class:`MainConfig`; any stage's job reads the same file and uses its section.
Unknown keys are errors (a typo must not silently fall back to a default). ``load_config`` reports every problem
with the file name and the dotted field path.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from mujo.names import check_name
from mujo.schema import DEFAULT_TEXT_DIM, DEFAULT_VIDEO_DIM, MODALITIES

SafeName = Annotated[str, AfterValidator(lambda v: check_name(v, "the name"))]
"""A run or dataset name: it becomes a folder name, so it passes :func:`mujo.names.check_name`."""


class ConfigError(ValueError):
    """A configuration file is missing, unparsable or invalid."""


def _admits_bool(annotation) -> bool:
    if annotation is bool:
        return True
    return any(_admits_bool(a) for a in typing.get_args(annotation)) if typing.get_origin(annotation) in (
        typing.Union, types.UnionType, Annotated) else False


class _Strict(BaseModel):
    """Unknown keys are errors; infinities and NaNs are refused; ``true``/``false`` is not a number."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, v, info: ValidationInfo):
        if isinstance(v, bool) and info.field_name and not _admits_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"expected {cls.model_fields[info.field_name].annotation!s}, got the boolean {v!r}")
        return v


class StorageConfig(_Strict):
    root: str = Field("runs", description="Where runs live: a local folder or s3://bucket/prefix")
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (default: AWS_ENDPOINT_URL or AWS)")
    region: str | None = None
    # suite run time: the start-up probe's bound, configurable (tests set it low; the default is unchanged)
    probe_timeout_s: float = Field(10.0, gt=0, le=300, description=(
        "start-up check that the storage answers and is writable: seconds per request (two tries) before the job "
        "fails naming the endpoint; raise it only for an endpoint known to be slow"))


class RayConfig(_Strict):
    address: str | None = Field(None, description="None or 'local': start a local Ray; 'auto' or ray://...: attach")
    num_cpus: int | None = Field(None, ge=1)
    object_store_mb: int | None = Field(None, ge=64)
    include_dashboard: bool = Field(True, description="local Ray only: serve the dashboard on 127.0.0.1:8265")


class DatasetSpec(_Strict):
    """One synthetic dataset: which activities, how many subjects per split, how clips look."""

    name: SafeName
    activities: Literal["all", "mmfit", "wide"] | list[str] = "all"  # wide: issue 17's wider vocabulary
    subjects: dict[str, int] = Field(default_factory=lambda: {"train": 16, "val": 4})
    clips_per_activity: int = Field(1, ge=1, description="clips per subject and activity")
    clip_seconds: tuple[float, float] = (16.0, 24.0)
    subject_offset: int = Field(0, ge=0, description="first subject number (keeps datasets' subjects disjoint)")
    label_style: Literal["free_text", "canonical"] = "free_text"
    real_sensors: bool = Field(False, description="simulate real IMUs (gain, bias, noise, mounting) instead of ideal")
    video_dim: int = DEFAULT_VIDEO_DIM

    @field_validator("subjects")
    @classmethod
    def _splits(cls, v: dict[str, int]) -> dict[str, int]:
        bad = set(v) - {"train", "val", "test"}
        if bad:
            raise ValueError(f"unknown split(s) {sorted(bad)}; use train, val, test")
        if any(n < 0 for n in v.values()) or sum(v.values()) == 0:
            raise ValueError("subject counts must be >= 0 and not all zero")
        return v


class GenerateConfig(_Strict):
    datasets: list[DatasetSpec] = Field(default_factory=lambda: [DatasetSpec(name="synthfit")])
    seed: int = 0
    clips_per_task: int = Field(32, ge=1)


class PreprocessConfig(_Strict):
    trim_fraction: float = Field(0.15, ge=0.0, lt=0.5)
    text_batch_size: int = Field(256, ge=1, description="at most this many label texts per call to an embedding actor")
    text_actors: int = Field(1, ge=1, description="embedding actors (each loads the text model once)")
    text_actor_cpus: float = Field(0.0, ge=0, description="CPUs reserved per embedding actor (busy only while it "
                                   "loads the model and on texts it has not seen: 0 leaves every core to the files)")
    window_cpus: float = Field(1.0, gt=0, description="CPUs reserved per file worker (an actor that reads, windows "
                               "and writes one raw file at a time)")
    max_file_workers: int | None = Field(None, ge=1, description="most file workers; None: one per raw file. The "
                                         "pool starts as wide as the cluster's CPUs allow and grows with it")
    shard_rows: int = Field(4096, ge=1, description="target rows per shard")
    max_quarantine_share: float = Field(0.2, ge=0.0, le=1.0, description="fail when more clips are quarantined")
    # issue 17: caption alternatives in the shards (schema 1.1; docs/sample-format.md)
    caption_alternatives: int = Field(4, ge=0, description=(
        "most captions kept per window (the label text first, then a motion corpus' other descriptions) in a "
        "dataset whose clips have alternatives; more are counted in the log, not kept. 0 or 1: text_emb only"))


class ModelConfig(_Strict):
    modalities: list[str] = Field(default_factory=lambda: list(MODALITIES))
    embed_dim: int = Field(1280, ge=8)
    proj_hidden: int = Field(1280, ge=8)
    proj_layers: int = Field(2, ge=1, le=4)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    activation: Literal["relu", "gelu"] = "relu"
    text_dim: int = DEFAULT_TEXT_DIM
    video_dim: int = DEFAULT_VIDEO_DIM
    text_hidden: int = 512
    video_hidden: int = 512
    init_temperature: float = Field(0.07, gt=0.0)
    learn_temperature: bool = True

    @field_validator("modalities")
    @classmethod
    def _mods(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if m not in MODALITIES]
        if bad or len(v) < 2 or len(set(v)) != len(v):
            raise ValueError(f"modalities must be >= 2 distinct names from {list(MODALITIES)}; got {v}")
        return v


class LossConfig(_Strict):
    form: Literal["all_pairs", "text_anchor"] = "all_pairs"
    pair_weights: dict[str, float] | None = None
    loss_impl: Literal["tiled", "local", "naive"] = Field("tiled", description=(
        "tiled: this rank's rows against all columns tile by tile, no b x B logits kept; local: the same rows with "
        "the b x B matrices; naive: the full B x B matrices on every rank (for comparison); all exact "
        "(mujo.losses, benchmarks/README.md). The former local_loss: false is naive"))
    ring: bool | None = Field(None, description=(
        "tiled only: pass column blocks rank to rank instead of all-gathering them (O(b) memory); default: on"))
    tile_size: int | None = Field(None, ge=1, description="tiled only: logit tile edge (default per device)")

    @model_validator(mode="before")
    @classmethod
    def _legacy_local_loss(cls, data):
        """``local_loss`` (older configs) maps onto ``loss_impl``: false is naive; true is a row-local form."""
        if not isinstance(data, dict) or "local_loss" not in data:
            return data
        data = dict(data)
        local = data.pop("local_loss")
        if not isinstance(local, bool):
            raise ValueError(f"loss.local_loss must be true or false, got {local!r}; use loss.loss_impl instead")
        impl = data.get("loss_impl")
        if (not local and impl not in (None, "naive")) or (local and impl == "naive"):
            raise ValueError(f"loss.local_loss: {str(local).lower()} contradicts loss.loss_impl: {impl}; "
                             "set loss.loss_impl only")
        if not local:
            data["loss_impl"] = "naive"
        return data

    @model_validator(mode="after")
    def _tiled_options(self):
        if self.loss_impl != "tiled" and (self.ring or self.tile_size is not None):
            raise ValueError(f"loss.ring and loss.tile_size apply to loss.loss_impl: tiled, not {self.loss_impl}")
        return self

    @property
    def use_ring(self) -> bool:
        """Whether the tiled form exchanges column blocks in a ring (its default)."""
        return self.loss_impl == "tiled" and self.ring is not False


# ---- sensor realism (issue 17, mujo.data.realism; docs/sensor-realism.md) -------------------------------------

class RealismConfig(_Strict):
    """Sensor realism applied to every pretraining batch (``pretrain.realism``): each switch adds one effect of a real
    watch to the virtual IMU, drawn anew per batch and deterministic per seed; all off (the identity) by default.
    The physical basis of each is in :mod:`mujo.data.realism` and docs/sensor-realism.md."""

    mirror_p: float = Field(0.0, ge=0.0, le=1.0, description="share of samples mirrored left/right (pose with them)")
    placement: bool = Field(False, description="the sensor sits placement_cm up the forearm from the wrist joint")
    placement_cm: tuple[float, float] = Field((1.0, 6.0), description="range of that distance, cm")
    orientation: Literal["off", "wrist", "any"] = Field("off", description=(
        "watch axes vs the forearm frame: wrist = uniform roll about the forearm plus tilt_deg tilts; any = uniform"))
    tilt_deg: float = Field(10.0, ge=0.0, le=90.0)
    sensor: bool = Field(False, description="per-axis gain and zero-g bias, white noise, 16-bit quantisation")
    gain_std: float = Field(0.02, ge=0.0, le=0.5)
    bias_std: float = Field(0.4, ge=0.0, le=5.0, description="m/s^2")
    noise_ug: float = Field(150.0, ge=0.0, le=10000.0, description="noise density, micro-g per sqrt(Hz)")
    saturation: bool = Field(False, description="clip at the full-scale range, drawn per sample from range_g")
    range_g: list[float] = Field(default_factory=lambda: [8.0, 16.0], min_length=1)
    linear_p: float = Field(0.0, ge=0.0, le=1.0, description="share of samples with gravity removed (linear acc)")
    jitter: bool = Field(False, description="clock rate error and uneven sample times, read back as uniform 50 Hz")
    rate_error: float = Field(0.03, ge=0.0, le=0.2)
    jitter_ms: float = Field(2.0, ge=0.0, le=20.0)
    one_wrist_p: float = Field(0.0, ge=0.0, le=1.0, description="share of samples keeping one wrist (other zeros)")
    seed: int = 0

    @field_validator("placement_cm")
    @classmethod
    def _cm(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= v[0] <= v[1] <= 20.0:
            raise ValueError(f"placement_cm must be 0 <= low <= high <= 20 cm, got {list(v)}")
        return v

    @field_validator("range_g")
    @classmethod
    def _ranges(cls, v: list[float]) -> list[float]:
        if any(not 1.0 <= g <= 64.0 for g in v):
            raise ValueError(f"range_g values are full-scale ranges in g (2, 4, 8, 16, ...), got {v}")
        return v

# ---- end of sensor realism ------------------------------------------------------------------------------------


class PretrainConfig(_Strict):
    dataset: SafeName = "synthfit"
    num_workers: int = Field(2, ge=0)
    cpus_per_worker: float = Field(0.5, gt=0)
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="how the workers' bundles are placed on nodes (Ray placement group strategy)")
    use_gpu: bool = False
    amp: bool = Field(False, description="bf16 autocast (on GPU)")
    batch_size: int = Field(128, ge=2, description="per worker")
    epochs: int = Field(10, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(20, ge=0)
    grad_clip: float | None = 1.0
    checkpoint_every_steps: int = Field(50, ge=1)
    report_every_steps: int = Field(10, ge=1, description=(
        "steps between ray.train.report calls (a cross-rank barrier, ~1-2 s on small CPU nodes); every step's "
        "metrics are kept in the run history either way"))
    num_to_keep: int = Field(2, ge=1)
    max_failures: int = Field(2, ge=0)
    shuffle_buffer: int = Field(1024, ge=0)
    grad_cache_chunks: int | None = Field(None, ge=1)
    fewshot_shots: int = Field(5, ge=0, description=(
        "labelled validation windows per class for val/fewshot_f1 (few-shot Macro F1 of each sensor modality's "
        "embeddings, nearest class mean, at every epoch end); 0: not computed"))
    seed: int = 0
    realism: RealismConfig = Field(default_factory=RealismConfig)  # issue 17: sensor realism per batch
    caption_sampling: Literal["first", "per_epoch"] = Field("per_epoch", description=(  # issue 17: text variety
        "per_epoch: where the shards carry caption alternatives, each training window's text is one of them, drawn "
        "per (seed, epoch, window); first: always the label text (text_emb). Validation and evaluation use the "
        "label text either way"))

    # ---- issue 20: elastic worker groups (mujo.train.elastic) ------------------------------------------------------
    # ``num_workers: [min, max]`` in YAML or --set is read as num_workers = max, min_workers = min (so every reader of
    # num_workers keeps an int: the schedule, the search's CPU sizing); the global batch is batch_size x max whatever
    # the current worker count.
    min_workers: int | None = Field(None, ge=1, description=(
        "elastic training: the fewest workers the group may shrink to (num_workers is then the most); set it by "
        "writing num_workers: [min, max]. The global batch stays batch_size x num_workers, split evenly"))
    resize_interval_s: float = Field(60.0, gt=0, description=(
        "elastic training: seconds between Ray Train's checks for room to grow the worker group"))
    simulated_gpus: bool = Field(False, description=(
        "with use_gpu: request the GPU resources but train on CPU with gloo (nodes that declare GPUs they do not "
        "have: the local autoscaling cluster, cluster/local_autoscaler.py)"))

    @model_validator(mode="before")
    @classmethod
    def _worker_range(cls, data):
        """``num_workers: [min, max]`` -> ``num_workers: max, min_workers: min`` (``[n, n]`` is a fixed group)."""
        if not isinstance(data, dict) or not isinstance(data.get("num_workers"), (list, tuple)):
            return data
        from mujo.train.elastic import parse_worker_range

        data = dict(data)
        lo, hi = parse_worker_range(data["num_workers"])
        if data.get("min_workers") is not None and data["min_workers"] != lo:
            raise ValueError(f"pretrain.num_workers {list(data['num_workers'])} contradicts pretrain.min_workers "
                             f"{data['min_workers']}; set only num_workers: [min, max]")
        data["num_workers"], data["min_workers"] = hi, (lo if lo < hi else None)
        return data

    @model_validator(mode="after")
    def _elastic(self):
        if self.min_workers is not None:
            from mujo.train.elastic import check_elastic

            check_elastic(self.batch_size, self.min_workers, self.num_workers, self.max_failures)
        return self
    # ---- end of elastic worker groups ------------------------------------------------------------------------------


class EvaluateConfig(_Strict):
    dataset: SafeName = "synthhar"
    pretrained: str | None = Field(None, description="model artefact to evaluate (default <run>/pretrain/model)")
    inputs: list[list[str]] = Field(default_factory=lambda: [["acc"], ["video", "pose", "acc"]])
    settings: list[Literal["baseline", "frozen", "finetuned"]] = Field(
        default_factory=lambda: ["baseline", "frozen", "finetuned"])
    fractions: list[float] = Field(default_factory=lambda: [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0])
    seeds: int = Field(20, ge=1)
    calibrations: list[Literal["none", "unsupervised", "supervised"]] = Field(default_factory=lambda: ["none"])
    lr: float = 1e-4
    max_epochs: int = Field(200, ge=1)
    patience: int = Field(25, ge=1)
    batch_size: int = Field(64, ge=1)
    head_hidden: int = Field(256, ge=1)
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0, description=(
        "GPUs per fan-out trial; fractions let trials share a GPU (e.g. 0.25: four per GPU). 0: CPU"))
    max_concurrent_trials: int | None = Field(None, ge=1, description=(
        "cap on trials running at once; unset: as many as the cluster's resources allow (on an autoscaling "
        "cluster the pending trials are what brings workers up)"))
    max_retries: int = Field(1, ge=0)
    zero_shot: bool = Field(True, description="also report zero-shot top-1/3/5 Macro F1 (the paper's Table 3)")
    zero_shot_models: dict[str, str] = Field(default_factory=dict, description=(
        "more artefacts to compare zero-shot, by name (e.g. a unimodally pretrained model); the evaluated "
        "artefact is always included as 'multimodal'"))
    zero_shot_calibrations: list[Literal["none", "unsupervised", "supervised"]] = Field(
        default_factory=lambda: ["none", "unsupervised", "supervised"])
    keep_classifiers: bool = Field(False, description=(
        "keep the classifier of the best seed (by validation Macro F1) of each fan-out cell as an artefact under "
        "<run>/models/<dataset>/ (mujo.models.artefact); the other trials' classifiers are deleted"))
    # ---- issue 16: the evaluation engine (mujo.evaluate.engine) ------------------------------------------------------
    engine: Literal["grouped", "per_seed"] = Field("grouped", description=(
        "grouped: one Tune trial trains seeds_per_trial seeds of a cell together, frozen encoders run once per "
        "(calibration, inputs); per_seed: one trial per seed, the whole classifier each step (the old path)"))
    seeds_per_trial: int = Field(10, ge=1, description=(
        "grouped engine: seeds trained together in one trial (fewer: more trials to spread over a cluster)"))

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, v: list[list[str]]) -> list[list[str]]:
        for group in v:
            bad = [m for m in group if m not in ("video", "pose", "acc")]
            if bad or not group:
                raise ValueError(f"each input is a non-empty list of video/pose/acc; got {group}")
        return v

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < f <= 1 for f in v):
            raise ValueError(f"fractions must lie in (0, 1]; got {v}")
        return v


class SearchConfig(_Strict):
    """The pretraining hyperparameter search (Ray Tune): search algorithm, ASHA early stopping, search space.

    Every trial is one pretraining run (``pretrain`` section) with the sampled values put in; one Tune iteration is
    one ``ray.train.report`` of that run (every ``pretrain.report_every_steps`` steps, at epoch ends and
    checkpoints). A range ``[low, high]`` with ``low == high`` (or a one-element list) fixes that value.
    """

    algorithm: Literal["random", "optuna"] = Field("random", description="random search or Optuna's TPE sampler")
    num_samples: int = Field(8, ge=1, description="number of trials")
    max_concurrent_trials: int = Field(1, ge=1, description=(
        "trials running at once; each runs pretrain.num_workers x pretrain.cpus_per_worker CPUs of Train workers "
        "outside Tune's placement groups, plus Ray Data ingest: size it so they cannot take every CPU"))
    trial_cpus: float = Field(0.0, ge=0, description=(
        "CPUs reserved for the trial process itself (it only drives the trainer; 0 leaves every CPU to Train "
        "workers and Ray Data)"))
    max_retries: int = Field(1, ge=0, description="retries of a failed trial (it resumes from its last checkpoint)")
    seed: int | None = Field(0, description="seed of the search algorithm (None: unseeded)")
    metric: str = Field("val/R@1/mean", min_length=1, description=(
        "the objective: a metric pretraining reports, e.g. val/R@1/mean, val/R@5/acc->text, "
        "val/fewshot_f1/mean (few-shot Macro F1), loss_mean"))
    mode: Literal["max", "min"] = "max"
    grace_period: int = Field(4, ge=1, description="ASHA: Tune iterations before a trial can be stopped")
    reduction_factor: float = Field(2.0, gt=1, description="ASHA: keep the best 1/reduction_factor at each rung")
    max_t: int = Field(1000, ge=1, description=(
        "ASHA: Tune iterations after which a trial is stopped (above a trial's report count, trials that "
        "survive every rung run to their end)"))
    # the search space
    lr: tuple[float, float] = Field((1e-4, 3e-3), description="pretrain.lr: log-uniform in [low, high]")
    proj_layers: list[int] = Field(default_factory=lambda: [1, 2, 3], description="model.proj_layers: choice")
    proj_hidden: list[int] = Field(default_factory=lambda: [256, 512, 1280], description="model.proj_hidden: choice")
    dropout: tuple[float, float] = Field((0.0, 0.3), description="model.dropout: uniform in [low, high]")
    activation: list[Literal["relu", "gelu"]] = Field(default_factory=lambda: ["relu", "gelu"],
                                                      description="model.activation: choice")
    init_temperature: tuple[float, float] = Field((0.03, 0.1), description=(
        "model.init_temperature: log-uniform in [low, high]"))
    loss_form: list[Literal["all_pairs", "text_anchor"]] = Field(
        default_factory=lambda: ["all_pairs", "text_anchor"], description="loss.form: choice")
    points: list[dict[str, float | int | str]] = Field(default_factory=list, description=(
        "configurations to evaluate first (e.g. the current defaults), each a mapping of some of the dimensions "
        "above (lr, proj_layers, ...) to values; the others are sampled. They count towards num_samples"))

    @field_validator("lr", "dropout", "init_temperature")
    @classmethod
    def _range(cls, v: tuple[float, float], info) -> tuple[float, float]:
        low, high = v
        if low > high:
            raise ValueError(f"range [{low}, {high}]: low must be <= high")
        if info.field_name in ("lr", "init_temperature") and low <= 0:
            raise ValueError(f"log-uniform range [{low}, {high}] must be > 0")
        if info.field_name == "dropout" and not (0 <= low and high < 1):
            raise ValueError(f"dropout range [{low}, {high}] must lie in [0, 1)")
        return v

    @model_validator(mode="after")
    def _points_in_space(self) -> "SearchConfig":
        names = ("lr", "proj_layers", "proj_hidden", "dropout", "activation", "init_temperature", "loss_form")
        for point in self.points:
            if not point or set(point) - set(names):
                raise ValueError(f"search.points: each point maps some of {list(names)} to values; got {point}")
            for name, value in point.items():
                space = getattr(self, name)
                inside = (isinstance(value, (int, float)) and space[0] <= value <= space[1]) \
                    if isinstance(space, tuple) else value in space
                if not inside:
                    raise ValueError(f"search.points: {name}={value!r} lies outside search.{name} {list(space)}")
        return self

    @field_validator("proj_layers", "proj_hidden", "activation", "loss_form")
    @classmethod
    def _choices(cls, v: list, info) -> list:
        if not v or len(set(v)) != len(v):
            raise ValueError(f"{info.field_name} must be a non-empty list of distinct values; got {v}")
        if info.field_name == "proj_layers" and any(not 1 <= n <= 4 for n in v):
            raise ValueError(f"proj_layers must lie in 1..4; got {v}")
        if info.field_name == "proj_hidden" and any(n < 8 for n in v):
            raise ValueError(f"proj_hidden must be >= 8; got {v}")
        return v


class FinetuneJobConfig(_Strict):
    """``jobs/finetune.py``: one classifier trained on a preprocessed dataset and saved as an artefact."""

    dataset: SafeName = "synthhar"
    pretrained: str | None = Field(None, description="pretrained artefact (default <run>/pretrain/model)")
    inputs: list[Literal["video", "pose", "acc"]] = Field(default_factory=lambda: ["acc"], min_length=1)
    setting: Literal["baseline", "frozen", "finetuned"] = "finetuned"
    fraction: float = Field(1.0, gt=0, le=1)
    calibration: Literal["none", "unsupervised"] = Field("none", description=(
        "fitted against the pretraining corpus and stored in the artefact; supervised calibration needs true labels "
        "at inference, so a deployable classifier cannot use it"))
    seed: int = 0
    name: SafeName | None = Field(None, description=(
        "artefact folder name under <run>/models/ (default <inputs>-<setting>-<fraction>-s<seed>)"))
    output: str | None = Field(None, description="artefact folder, local or s3:// (default <run>/models/<name>)")
    lr: float = Field(1e-4, gt=0)
    max_epochs: int = Field(200, ge=1)
    patience: int = Field(25, ge=1)
    batch_size: int = Field(64, ge=1)
    head_hidden: int = Field(256, ge=1)
    cpus: float = Field(1.0, gt=0, description="CPUs of the Ray task that trains")
    gpus: float = Field(0.0, ge=0, description="GPUs of the Ray task that trains (0: CPU)")


class PredictConfig(_Strict):
    """``jobs/predict.py``: batch inference of a classifier artefact with Ray Data."""

    model: str | None = Field(None, description="classifier artefact (default <run>/models/<finetune name>)")
    input: str | None = Field(None, description=(
        "raw clips folder (part-*.parquet + dataset.json, from generation or any adapter), preprocessed shards "
        "(a folder with manifest.json), or a bring-your-own card (.yaml); default <run>/raw/<finetune.dataset>"))
    source: str | None = Field(None, description="a bring-your-own card's data folder (input is the card)")
    splits: list[Literal["train", "val", "test"]] | None = Field(None, description="only these splits' recordings")
    name: SafeName = Field("predictions", description="output folder name under <run>/predict/")
    output: str | None = Field(None, description="output folder (default <run>/predict/<name>)")
    batch_size: int = Field(256, ge=1, description="windows per model call")
    top_k: int = Field(3, ge=1)
    smoothing: int = Field(1, ge=1, description="windows in the centred moving average of probabilities (1: none)")
    max_nan_share: float = Field(0.1, ge=0, le=1, description=(
        "a recording's frames with NaN are interpolated when at most this share of a stream; above it the "
        "recording is quarantined (both counted)"))
    ignore_labels: bool = Field(False, description=(
        "predict although the data's label list differs from the classifier's classes (no accuracy then)"))
    cpus_per_actor: float = Field(1.0, gt=0)
    num_gpus: float = Field(0.0, ge=0, description="GPUs per model actor (0: CPU)")
    max_actors: int | None = Field(None, ge=1, description="most model actors (default: one per input file)")
    after_main: bool = Field(False, description=(
        "jobs/main.py ends by predicting the evaluated dataset's test recordings with the best acc classifier of "
        "the fan-out (needs evaluate.keep_classifiers)"))


class ExportConfig(_Strict):
    """``jobs/export.py``: a sensor-only classifier to TorchScript and ONNX, checked with ONNX Runtime."""

    model: str | None = Field(None, description="classifier artefact (default <run>/models/<finetune name>)")
    output: str | None = Field(None, description="output folder (default <artefact>/export)")
    check_windows: int = Field(1000, ge=1, description="real windows the exported models are checked on")
    tolerance: float = Field(1e-5, gt=0, description="largest allowed absolute difference of probabilities")
    opset: int = Field(18, ge=13, description="ONNX opset: 18 is what torch's exporter writes natively; a lower one "
                       "goes through ONNX's version converter, which may fail and leave 18 (the card states the "
                       "opset actually written)")


class EmbedConfig(_Strict):
    """``jobs/embed.py``: joint-space embeddings of a preprocessed dataset's windows, per modality (Ray Data)."""

    model: str | None = Field(None, description="pretrained artefact (default <run>/pretrain/model)")
    dataset: SafeName = "synthhar"
    modalities: list[Literal["video", "pose", "acc", "text"]] = Field(default_factory=lambda: ["acc"],
                                                                       min_length=1)
    splits: list[Literal["train", "val", "test"]] | None = None
    output: str | None = Field(None, description="output folder (default <run>/embeddings/<dataset>)")
    batch_size: int = Field(512, ge=1)
    cpus_per_actor: float = Field(1.0, gt=0)
    num_gpus: float = Field(0.0, ge=0)


class MainConfig(_Strict):
    run_name: SafeName = "demo"
    storage: StorageConfig = StorageConfig()
    ray: RayConfig = RayConfig()
    generate: GenerateConfig = GenerateConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    pretrain: PretrainConfig = PretrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    search: SearchConfig = SearchConfig()
    finetune: FinetuneJobConfig = FinetuneJobConfig()
    predict: PredictConfig = PredictConfig()
    export: ExportConfig = ExportConfig()
    embed: EmbedConfig = EmbedConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> "MainConfig":
        names = [d.name for d in self.generate.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"generate.datasets has duplicate names: {names}")
        if self.loss.form == "text_anchor" and "text" not in self.model.modalities:
            raise ValueError("loss.form 'text_anchor' needs 'text' in model.modalities")
        if self.search.metric.startswith("val/"):
            from mujo.evaluate.metrics import validation_metric_names

            known = validation_metric_names(self.model.modalities, fewshot=self.pretrain.fewshot_shots > 0)
            if self.search.metric not in known:
                hint = " (val/fewshot_f1 needs pretrain.fewshot_shots > 0)" if "fewshot" in self.search.metric else ""
                raise ValueError(f"search.metric '{self.search.metric}' is not a validation metric pretraining "
                                 f"reports for modalities {list(self.model.modalities)}{hint}; one of: "
                                 f"{', '.join(known[:8])}, ...")
        return self

    @property
    def run_dir(self) -> str:
        """The run's folder: ``s3://...`` as given, a local root made absolute (Ray workers change directory)."""
        import os

        from mujo.storage import is_s3, join

        root = self.storage.root if is_s3(self.storage.root) else os.path.abspath(self.storage.root)
        return join(root, self.run_name)


def _set_dotted(tree: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{k}' is not a section")
    node[keys[-1]] = value


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> MainConfig:
    """Load and validate a YAML config; ``overrides`` are ``section.key=yaml-value`` strings."""
    tree: dict = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found (pass --config with a YAML file; see jobs/configs/)")
        try:
            tree = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
        if not isinstance(tree, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections")
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0]
            raise ConfigError(f"override '{item}': the value is not valid YAML ({first}); quote strings, write "
                              "lists as [a, b] and mappings as {k: v}") from None
        _set_dotted(tree, key.strip(), value)
    try:
        return MainConfig.model_validate(tree)
    except ValidationError as exc:
        lines = [f"{source}: invalid configuration ({exc.error_count()} problem(s)):"]
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "<top>"
            lines.append(f"  - {loc}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None


def dump_config(cfg: MainConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
