"""Real datasets in: adapters that read a dataset in its published layout and emit raw clips.

Every adapter has the same API::

    adapter = get_adapter("mmfit")                      # or get_adapter("byod", card="my_card.yaml")
    clips = adapter.read("/data/MM-Fit", include_no_activity=True)   # Iterator[RawClip]
    card_json = write_raw(adapter.dataset_name, clips, raw_dir(run, adapter.dataset_name), adapter.card,
                          labels=adapter.labels(include_no_activity=True), report=adapter.report)

or in one call :func:`ingest`. The written ``<run>/raw/<dataset>/part-*.parquet`` + ``dataset.json`` are exactly
what preprocessing reads (``mujo.pipelines.preprocess``). Each adapter's card is ``datasets/<name>.yaml``
(``datasets/README.md`` is the catalogue). Plain Python and numpy: nothing here imports Ray.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mujo.adapters.byod import ByodAdapter, ByodCard, load_byod_card
from mujo.adapters.cards import CardError, DatasetCard, LabelSpec, SplitSpec, cards_dir, list_cards, load_card
from mujo.adapters.common import DatasetAdapter, IngestReport, raw_dir, write_raw
from mujo.adapters.corpus import CorpusAdapter, CorpusCard, is_corpus_card, load_corpus_card
from mujo.adapters.flag3d import Flag3DAdapter
from mujo.adapters.humanml3d import HumanML3DAdapter, KITMLAdapter
from mujo.adapters.mhealth import MHealthAdapter
from mujo.adapters.mmfit import MMFitAdapter
from mujo.adapters.motionsense import MotionSenseAdapter
from mujo.adapters.myogym import MyoGymAdapter
from mujo.adapters.realdata import BasicMotionsAdapter, DeepMimicAdapter

ADAPTERS: dict[str, type[DatasetAdapter]] = {
    "mmfit": MMFitAdapter,
    "motionsense": MotionSenseAdapter,
    "mhealth": MHealthAdapter,
    "myogym": MyoGymAdapter,
    "flag3d": Flag3DAdapter,
    "byod": ByodAdapter,
    "humanml3d": HumanML3DAdapter,
    "kitml": KITMLAdapter,
    "corpus": CorpusAdapter,
    "basicmotions": BasicMotionsAdapter,
    "deepmimic": DeepMimicAdapter,
}
"""Adapter classes by name; ``byod`` and ``corpus`` (a ``kind: motion_corpus`` card) need a card path."""


def get_adapter(name: str, card: str | Path | DatasetCard | ByodCard | None = None) -> DatasetAdapter:
    """An adapter instance: a published dataset by name (its card from ``datasets/<name>.yaml`` unless ``card``
    is given), or ``byod`` with the user's ``card``."""
    if name not in ADAPTERS:
        raise KeyError(f"unknown dataset adapter {name!r}; known: {sorted(ADAPTERS)} (use 'byod' with a card for "
                       "your own data)")
    cls = ADAPTERS[name]
    if cls is ByodAdapter:
        if card is None:
            raise ValueError("the byod adapter needs a card: get_adapter('byod', card='my_card.yaml')")
        return ByodAdapter(card)
    if cls is CorpusAdapter:
        if card is None:
            raise ValueError("the corpus adapter needs a card: get_adapter('corpus', card='my_corpus.yaml')")
        return CorpusAdapter(card)
    if card is not None and not isinstance(card, DatasetCard):
        card = load_card(card)
    return cls(card)


def ingest(dataset: str | None, source: str | None, out: str, *, card: str | Path | None = None,
           clips_per_part: int = 64, **options: Any) -> dict[str, Any]:
    """Read one dataset and write its raw clips + ``dataset.json`` under ``<out>/raw/<name>`` (local or s3://).

    ``dataset`` names a published-dataset adapter; with ``card`` and no ``dataset`` (or ``dataset='byod'``) the
    card is a bring-your-own-data card. Returns the ``dataset.json`` content.
    """
    name = dataset or "byod"
    if name == "byod" and card is not None and is_corpus_card(card):  # kind: motion_corpus
        name = "corpus"
    if name == "byod" and card is None:
        raise ValueError("give a dataset name (one of %s) or a BYOD card" % sorted(a for a in ADAPTERS if a != "byod"))
    adapter = get_adapter(name, card=card)
    if source is None and name not in ("byod", "corpus"):
        raise ValueError(f"{name}: give the dataset's folder (--source)")
    opts = adapter.resolve_options(options)
    labels = adapter.labels(**opts)
    clips = adapter.read(source, **opts)
    return write_raw(adapter.dataset_name, clips, raw_dir(out, adapter.dataset_name), adapter.card, labels=labels,
                     clips_per_part=clips_per_part, report=adapter.report, options=opts, adapter=name)


__all__ = [
    "ADAPTERS", "ByodAdapter", "ByodCard", "CardError", "CorpusAdapter", "CorpusCard", "DatasetAdapter", "DatasetCard",
    "IngestReport", "LabelSpec",
    "SplitSpec", "cards_dir", "get_adapter", "ingest", "list_cards", "load_byod_card", "load_card", "raw_dir",
    "write_raw",
]
