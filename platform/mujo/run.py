"""A run folder and what its stages hand each other: :class:`RunLayout` owns every path inside a run; the typed,
versioned contracts (:class:`Manifest`, :class:`PretrainedMeta`, :class:`TrialResult`, :class:`EvaluationPlan`)
are what is written, read back and passed between stages, validated on read with an error naming the file.

No Ray, no torch: plain pydantic over :mod:`mujo.storage`.

The run folder (local or ``s3://``)::

    <root>/<run_name>/
      config.yaml  _run.lock  logs/
      raw/<dataset>/        part-*.parquet + dataset.json       (generate, ingest)
      shards/<dataset>/     <split>/shard-*.parquet, manifest.json, _progress/  (preprocess)
      train/<name>/         Ray Train checkpoints + tensorboard/ (pretrain)
      pretrain/model/       the pretrained artefact (model.json, weights.pt, history.json)
      search/               best.json, models/<trial>/ (the pretraining search)
      tune/<name>/          Ray Tune trials of the fan-out (TensorBoard files)
      calibration/<dataset>/<mode>/   fitted calibrations
      models/<name>/        classifier artefacts
      results/<dataset>/    tables, CSVs, plots
      predict/<name>/  embeddings/<dataset>/
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mujo import storage
from mujo.errors import InputError
from mujo.names import SPLITS, check_name, check_split

# --------------------------------------------------------------------------------------------------------------
# The layout
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunLayout:
    """Every path inside one run folder (``root`` = ``<storage.root>/<run_name>``, local absolute or ``s3://``).
    Every name that becomes a path component passes :func:`mujo.names.check_name`."""

    root: str

    @classmethod
    def of(cls, cfg: Any) -> "RunLayout":
        """The layout of a :class:`mujo.config.MainConfig`'s run."""
        return cls(cfg.run_dir)

    def _at(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    # whole-run files
    @property
    def config_file(self) -> str:
        return self._at("config.yaml")

    @property
    def lock(self) -> str:
        return self._at("_run.lock")

    @property
    def logs(self) -> str:
        return self._at("logs")

    # data
    def raw(self, dataset: str) -> str:
        return self._at("raw", check_name(dataset, "dataset name"))

    def dataset_card(self, dataset: str) -> str:
        return storage.join(self.raw(dataset), "dataset.json")

    def shards(self, dataset: str) -> str:
        return self._at("shards", check_name(dataset, "dataset name"))

    def shard_split(self, dataset: str, split: str) -> str:
        return storage.join(self.shards(dataset), check_split(split))

    def manifest(self, dataset: str) -> str:
        return storage.join(self.shards(dataset), "manifest.json")

    def quarantine_report(self, dataset: str) -> str:
        """Written instead of the manifest when too much of the dataset was quarantined."""
        return storage.join(self.shards(dataset), "quarantine.json")

    # pretraining
    @property
    def train(self) -> str:
        """Ray Train's storage: one folder per training run name."""
        return self._at("train")

    def train_run(self, name: str) -> str:
        return storage.join(self.train, check_name(name, "training run name"))

    def tensorboard(self, name: str) -> str:
        return storage.join(self.train_run(name), "tensorboard")

    @property
    def pretrained(self) -> str:
        return self._at("pretrain", "model")

    @property
    def search(self) -> str:
        return self._at("search")

    def search_models(self, name: str) -> str:
        return storage.join(self.search, "models", check_name(name, "search name"))

    @property
    def search_best(self) -> str:
        return storage.join(self.search, "best.json")

    @property
    def search_trials(self) -> str:
        return storage.join(self.search, "trials.json")

    @property
    def search_best_model(self) -> str:
        """The best trial's pretrained artefact, copied."""
        return storage.join(self.search, "best_model")

    # evaluation and models
    @property
    def tune(self) -> str:
        """Ray Tune's storage of the fan-out."""
        return self._at("tune")

    def calibration(self, dataset: str, mode: str) -> str:
        return self._at("calibration", check_name(dataset, "dataset name"), check_name(mode, "calibration"))

    @property
    def models(self) -> str:
        """Classifier artefacts."""
        return self._at("models")

    def model(self, *names: str) -> str:
        return storage.join(self.models, *(check_name(n, "model name") for n in names))

    def results(self, dataset: str) -> str:
        return self._at("results", check_name(dataset, "dataset name"))

    def predictions(self, name: str) -> str:
        return self._at("predict", check_name(name, "prediction name"))

    def embeddings(self, dataset: str) -> str:
        return self._at("embeddings", check_name(dataset, "dataset name"))


# --------------------------------------------------------------------------------------------------------------
# Contracts
# --------------------------------------------------------------------------------------------------------------


class Contract(BaseModel):
    """A versioned document one stage writes and another reads. Unknown fields are kept (a newer writer may add
    some); a missing or mistyped field is an error naming the file. ``VERSION`` is the format this code writes;
    files of a higher major version are refused."""

    model_config = ConfigDict(extra="allow", frozen=True)
    VERSION: ClassVar[int] = 1
    version: int = 1

    @model_validator(mode="after")
    def _supported(self):
        if self.version > self.VERSION:
            raise ValueError(f"format version {self.version} is newer than this code reads ({self.VERSION}); "
                             "upgrade mujo-platform")
        return self

    def to_json(self) -> dict:
        return self.model_dump(mode="json")


C = TypeVar("C", bound=Contract)


def read_contract(uri: str, kind: type[C]) -> C:
    """Read and validate ``uri`` as ``kind``; :class:`~mujo.errors.InputError` naming the file, the fields at
    fault and the fix when it does not validate."""
    doc = storage.read_json(uri)
    return parse_contract(doc, kind, storage.describe(uri))


def parse_contract(doc: Any, kind: type[C], source: str = "<document>") -> C:
    try:
        return kind.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<top>'}: {e['msg']}" for e in exc.errors()[:5])
        raise InputError(f"{source} is not a valid {kind.__name__} ({problems}); it was written by another "
                         "version or edited by hand: write it again with the stage that makes it") from None


def write_contract(uri: str, doc: Contract) -> None:
    storage.write_json(uri, doc.to_json())


class QuarantineEntry(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    file: str
    clip_id: str | None
    dataset: str
    reason: str
    clips: int | None = None


class QuarantineSummary(BaseModel):
    model_config = ConfigDict(frozen=True)
    count: int = Field(description="entries")
    files: int = Field(description="entries that are whole files")
    clips: int = Field(description="clips the entries hold")
    share: float
    entries: list[QuarantineEntry]


class ChannelStats(BaseModel):
    model_config = ConfigDict(frozen=True)
    mean: list[float]
    std: list[float]
    count: int | None = None


class Manifest(Contract):
    """``shards/<dataset>/manifest.json``: a preprocessed dataset (preprocessing writes it; everything after reads
    it)."""

    schema_version: str = Field(description="the sample format of the shards (mujo.schema.SCHEMA_VERSION)")
    dataset: str
    raw: str
    labels: list[str] = Field(min_length=1)
    video_dim: int
    text_dim: int
    shards: dict[str, list[str]]
    counts: dict[str, dict[str, int]]
    rows: dict[str, int]
    stats: dict[str, ChannelStats]
    quarantine: QuarantineSummary
    clips: int
    seconds: float
    progress: dict[str, int] | None = None

    @model_validator(mode="after")
    def _splits(self) -> "Manifest":
        bad = sorted(set(self.shards) - set(SPLITS))
        if bad:
            raise ValueError(f"unknown split(s) {bad}")
        return self

    def rows_of(self, split: str) -> int:
        return self.rows.get(split, 0)

    @property
    def num_classes(self) -> int:
        return len(self.labels)


class PretrainedMeta(Contract):
    """``model.json`` of a pretrained artefact (or of a pretraining checkpoint)."""

    format: int
    model: dict[str, Any]
    step: int | None = None
    source: str | None = None
    stats: dict[str, ChannelStats] | None = None
    resumed_from_steps: list[int] = Field(default_factory=list)


class TrialResult(BaseModel):
    """One row of the fan-out (``trials.csv``): a trial's cell, outcome and metrics. ``status`` is ``failed`` for
    a trial that failed all its attempts (kept, never dropped)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    dataset: str
    inputs: str
    setting: Literal["baseline", "frozen", "finetuned"]
    fraction: float
    seed: int
    calibration: Literal["none", "unsupervised", "supervised"] = "none"
    status: Literal["ok", "failed"]
    error: str = ""
    test_macro_f1: float | None = None
    val_macro_f1: float | None = None
    best_epoch: int | None = None
    epoch: int | None = None
    train_samples: int | None = None
    trial_path: str | None = None
    classifier: str = Field("", description="the kept classifier artefact of this trial (evaluate.keep_classifiers)")
    per_class_f1: list[float] | None = Field(None, description=(  # #16 part 7: the report's per-class view
        "test F1 of each class, index = class id (mujo.evaluate.metrics.class_f1; NaN: class in neither truth nor "
        "prediction); None when the trial did not record it"))

    @property
    def cell(self) -> tuple[str, str, str, str, float]:
        return (self.dataset, self.inputs, self.calibration, self.setting, float(self.fraction))


Calibration = Literal["none", "unsupervised", "supervised"]
INPUT_SEP = "+"


class EvaluationPlan(BaseModel):
    """What an evaluation of one pretrained artefact on one dataset runs, decided once from the config: the
    fan-out's grid (inputs × settings × fractions × seeds × calibrations), the zero-shot calibrations, and so which
    calibrations — and whether the pretraining corpus as their reference — the data must be prepared for."""

    model_config = ConfigDict(frozen=True)
    dataset: str
    reference_dataset: str = Field(description="the pretraining corpus: the reference of every calibration")
    inputs: list[list[str]]
    settings: list[Literal["baseline", "frozen", "finetuned"]]
    fractions: list[float]
    seeds: int
    calibrations: list[Calibration] = Field(description="of the fan-out (empty: no fan-out)")
    zero_shot_calibrations: list[Calibration] = Field(description="of zero-shot (empty: no zero-shot)")

    @classmethod
    def from_config(cls, cfg: Any, fanout: bool = True, zero_shot: bool | None = None) -> "EvaluationPlan":
        """The plan of ``cfg.evaluate``: the fan-out unless ``fanout`` is False, zero-shot when ``zero_shot``
        (default: ``evaluate.zero_shot``)."""
        e = cfg.evaluate
        zero_shot = e.zero_shot if zero_shot is None else zero_shot
        return cls(dataset=e.dataset, reference_dataset=cfg.pretrain.dataset, inputs=e.inputs, settings=e.settings,
                   fractions=e.fractions, seeds=e.seeds, calibrations=list(e.calibrations) if fanout else [],
                   zero_shot_calibrations=list(e.zero_shot_calibrations) if zero_shot else [])

    @property
    def data_calibrations(self) -> list[Calibration]:
        """Every calibration some stage of the plan uses, in order, once: what the data is prepared for."""
        return list(dict.fromkeys([*self.calibrations, *self.zero_shot_calibrations]))

    @property
    def needs_reference(self) -> bool:
        """Does any calibration of the plan need the pretraining corpus (every mode except ``none`` does)?"""
        return any(c != "none" for c in self.data_calibrations)

    @property
    def modalities(self) -> list[str]:
        return sorted({m for group in self.inputs for m in group})

    @property
    def input_keys(self) -> list[str]:
        return [INPUT_SEP.join(group) for group in self.inputs]

    def trials(self) -> list[dict[str, Any]]:
        """Every seed run of the fan-out: its cell and seed (with ``evaluate.engine: grouped`` a Tune trial trains a
        group of them)."""
        return [{"inputs": i, "setting": s, "fraction": f, "seed": seed, "calibration": c}
                for i, s, f, seed, c in itertools.product(self.input_keys, self.settings, self.fractions,
                                                          range(self.seeds), self.calibrations)]


__all__ = ["ChannelStats", "Contract", "EvaluationPlan", "INPUT_SEP", "Manifest", "PretrainedMeta",
           "QuarantineEntry", "QuarantineSummary", "RunLayout", "TrialResult", "parse_contract", "read_contract",
           "write_contract"]
