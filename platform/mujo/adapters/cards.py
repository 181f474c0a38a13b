"""Dataset cards: the YAML files under ``datasets/`` that describe each real dataset, read by the adapters.

A card says where a dataset comes from (source, licence, citation), how it is laid out, its sampling rates, channels
and units, how its sensors map onto the platform's two wrist slots, its label map (class names in class-id order,
the raw values that stand for each class in the data, and the label text), its official split, the adapter's
option defaults, and what could not be confirmed. The adapters read the card; the card is also copied into the
written ``dataset.json``. Cards are validated with pydantic (unknown fields are refused, so a typo is an error);
every problem is raised as a :class:`CardError` naming the file and the field.

Cards live in ``<repo>/datasets/<name>.yaml``; the environment variable ``MUJO_DATASETS_DIR`` points elsewhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")


class CardError(ValueError):
    """A dataset card is missing a field, has a bad value, or contradicts the data it describes.

    ``source`` is the card (or data) file, ``field`` the card field at fault (dotted path, e.g. ``wrists.right``).
    """

    def __init__(self, source: str, field: str, message: str) -> None:
        super().__init__(f"{source}: field '{field}': {message}")
        self.source = source
        self.field = field
        self.message = message


def cards_dir() -> Path:
    """The folder of the dataset cards: ``$MUJO_DATASETS_DIR`` or ``<repo>/datasets``."""
    env = os.environ.get("MUJO_DATASETS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "datasets"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class LabelSpec(_Strict):
    """One class: its canonical ``name`` (the ``activity`` of a clip; class id = position in the card's list),
    the ``text`` of its label (``label_text``; default: the name with spaces), and the raw ``values`` that stand for
    it in the data (codes, strings). The name itself always counts as a raw value too."""

    name: str = Field(pattern=NAME_PATTERN)
    text: str | None = None
    values: list[str | int] = Field(default_factory=list)

    @property
    def label_text(self) -> str:
        return self.text if self.text else self.name.replace("_", " ")

    def raw_keys(self) -> set[str]:
        return {raw_key(v) for v in [self.name, *self.values]}


def raw_key(value: Any) -> str:
    """A raw label value as a lookup key: integers and integral floats (1, 1.0, "1") compare equal."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip()
    try:
        f = float(text)
        if f.is_integer():
            return str(int(f))
    except ValueError:
        pass
    return text


class SplitSpec(_Strict):
    """Which subjects (or, where the dataset says so, workouts/recordings: ``unit``) are in which split."""

    official: bool = False
    unit: Literal["subject", "workout", "recording"] = "subject"
    train: list[str] = Field(default_factory=list)
    val: list[str] = Field(default_factory=list)
    test: list[str] = Field(default_factory=list)
    extra: dict[str, list[str]] = Field(default_factory=dict)
    note: str = ""

    @field_validator("train", "val", "test", mode="before")
    @classmethod
    def _as_strings(cls, v: Any) -> Any:
        return [str(x) for x in v] if isinstance(v, list) else v

    @field_validator("extra", mode="before")
    @classmethod
    def _extra_strings(cls, v: Any) -> Any:
        return {k: [str(x) for x in xs] for k, xs in v.items()} if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _disjoint(self) -> "SplitSpec":
        seen: dict[str, str] = {}
        for split in SPLIT_NAMES:
            for s in getattr(self, split):
                if s in seen:
                    raise ValueError(f"'{s}' is listed in both '{seen[s]}' and '{split}'")
                seen[s] = split
        return self

    def split_of(self, key: str) -> str | None:
        """The split of a subject/workout id, or None when the card does not list it."""
        for split in SPLIT_NAMES:
            if key in getattr(self, split):
                return split
        return None


class DatasetCard(_Strict):
    """The card of one published dataset (see ``datasets/README.md`` for the field reference)."""

    name: str = Field(pattern=NAME_PATTERN)
    title: str
    adapter: str
    source: str
    licence: str
    citation: str
    layout: str
    sampling_rates_hz: dict[str, float]
    channels: dict[str, Any]
    units: dict[str, str]
    gravity: Literal["included", "removed", "not_applicable"]
    wrists: dict[Literal["left", "right"], str]
    labels: list[LabelSpec] = Field(min_length=1)
    null_label: LabelSpec | None = None
    split: SplitSpec
    subjects: dict[str, str] = Field(default_factory=dict,
                                     description="recording/workout id -> subject id, where the dataset has one")
    options: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    unconfirmed: list[str] = Field(default_factory=list)
    path: str = Field("", exclude=True, description="where the card was read from (set by the loader)")

    @field_validator("subjects", mode="before")
    @classmethod
    def _subject_strings(cls, v: Any) -> Any:
        return {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _unique_labels(self) -> "DatasetCard":
        names = [label.name for label in self.labels] + ([self.null_label.name] if self.null_label else [])
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"label names must be unique; repeated: {dup}")
        return self

    def label_names(self, include_null: bool = False) -> list[str]:
        """Class names in class-id order; the null class (when included) comes last."""
        names = [label.name for label in self.labels]
        if include_null:
            if self.null_label is None:
                raise CardError(self.path or self.name, "null_label", "this dataset has no null class to include")
            names.append(self.null_label.name)
        return names

    def lookup(self, include_null: bool = False) -> dict[str, LabelSpec]:
        """Raw label value (as :func:`raw_key`) -> label spec."""
        table: dict[str, LabelSpec] = {}
        specs = list(self.labels) + ([self.null_label] if include_null and self.null_label else [])
        for spec in specs:
            for key in spec.raw_keys():
                table[key] = spec
        return table

    def null_keys(self) -> set[str]:
        return self.null_label.raw_keys() if self.null_label else set()

    def summary(self) -> dict[str, Any]:
        """The card's fields for ``dataset.json``."""
        return self.model_dump(mode="json", exclude={"path"})


def format_validation_error(source: str, exc: ValidationError) -> CardError:
    """The first pydantic error as a :class:`CardError` naming the field (the others are appended)."""
    errors = exc.errors()
    parts = []
    for err in errors:
        loc = ".".join(str(x) for x in err["loc"]) or "<card>"
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field (a typo?)"
        parts.append((loc, msg))
    loc, msg = parts[0]
    more = "; ".join(f"'{l}': {m}" for l, m in parts[1:])
    return CardError(source, loc, msg + (f" (also: {more})" if more else ""))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file, with errors that name the file."""
    p = Path(path)
    if not p.is_file():
        raise CardError(str(p), "<file>", "card file does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise CardError(str(p), "<file>", f"not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise CardError(str(p), "<file>", "a card must be a YAML mapping of fields")
    return dict(data)


def load_card(name_or_path: str | Path) -> DatasetCard:
    """Load and validate a dataset card by dataset name (``datasets/<name>.yaml``) or by path."""
    text = str(name_or_path)
    if re.fullmatch(NAME_PATTERN, text) and not text.endswith((".yaml", ".yml")):
        path = cards_dir() / f"{text}.yaml"
    else:
        path = Path(text)
    data = read_yaml(path)
    try:
        card = DatasetCard.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(str(path), exc) from None
    card.path = str(path)
    return card


def list_cards() -> list[str]:
    """Names of the dataset cards in :func:`cards_dir`."""
    return sorted(p.stem for p in cards_dir().glob("*.yaml"))
