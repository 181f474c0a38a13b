"""The raw side of preprocessing, on the driver: listing each dataset's raw folder, reading each part file's footer
and schema, its label texts and clip ids, and marking repeated clip ids. Ray-free.

Everything here is cheap (listings, footers, two small columns) and runs before any file is windowed, so that bad
input or bad storage gives one clear line, not a Ray traceback:

- storage: each raw folder is listed through :mod:`mujo.storage`; an unreachable endpoint or refused credentials
  raise :class:`~mujo.storage.StorageError` naming the endpoint (never a secret) before anything starts;
- every raw part file to process has its Parquet footer read and its schema checked (required columns, types); an
  unreadable or truncated file, or one lacking a required column, is quarantined as a FILE with its reason
  (:attr:`RawFile.reason`), and the rest proceeds;
- its (small) ``label_text`` column is read too, on purpose twice (here and by the file worker): with the distinct
  normalised label texts known up front, a file worker asks for a file's embeddings the moment it starts on it,
  not after reading it (faster end to end: ``benchmarks/README.md``);
- a clip id repeated within one dataset, in or across its raw files, is quarantined (all but its first occurrence):
  a repeated clip would put duplicate windows in the shards, and across splits leak test clips into training.

Nothing here imports pydantic, :mod:`mujo.run` or :mod:`mujo.config` at import time: the file workers import this
package.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from dataclasses import dataclass, field

import pyarrow as pa

from mujo import storage
from mujo.data.clips import STRING_FIELDS, TENSORS
from mujo.data.text import clip_captions, normalize_label
from mujo.errors import InputError
from mujo.names import check_name


@dataclass
class RawFile:
    """One raw part file of a dataset and what the driver learnt about it."""

    uri: str
    dataset: str
    size: int
    mtime_ns: int
    rows: int | None = None  # clips, from the footer (None: unknown)
    reason: str = ""  # non-empty: quarantined on the driver
    key: str = ""  # progress key (file_key)
    texts: list[str] = field(default_factory=list)  # distinct normalised label texts
    skip: dict[int, str] = field(default_factory=dict)  # row -> why it is quarantined (a duplicate clip_id)

    def identity(self, params: str) -> dict:
        """What a progress record of this file must match to be reused: the file's size and modification time, the
        preprocessing parameters' fingerprint and, when it has any, which rows are quarantined as duplicates."""
        ident = {"size": self.size, "mtime_ns": self.mtime_ns, "params": params}
        if self.skip:  # which rows are duplicates depends on the other files: redo the file when that changes
            ident["skip"] = sorted(self.skip)
        return ident


def file_key(uri: str) -> str:
    """The progress key of a raw file: its name and a hash of its whole URI (two folders may hold the same name)."""
    base = posixpath.basename(uri)
    return f"{base.removesuffix('.parquet')}-{hashlib.sha1(uri.encode()).hexdigest()[:12]}"


def absolute(uri: str) -> str:
    """``uri`` itself on S3, its absolute path locally: listings name local files by absolute path."""
    return uri if storage.is_s3(uri) else os.path.abspath(uri)


# --------------------------------------------------------------------------------------------------------------
# Storage errors: one line naming the endpoint
# --------------------------------------------------------------------------------------------------------------

_REFUSED = ("INVALIDACCESSKEYID", "INVALID_ACCESS_KEY_ID", "SIGNATUREDOESNOTMATCH", "SIGNATURE_DOES_NOT_MATCH",
            "ACCESSDENIED", "ACCESS_DENIED", "EXPIREDTOKEN", "EXPIRED_TOKEN", "INVALIDTOKEN", "INVALID_TOKEN",
            "HTTP STATUS 403", "HTTP STATUS 401")


def _refused(text: str) -> bool:
    return any(s in text.upper() for s in _REFUSED)


def storage_problem(text: str) -> bool:
    """Does an error text say storage is unreachable or refuses us (rather than that a file is corrupt)?"""
    lower = text.lower()
    return _refused(text) or "NoSuchBucket" in text or any(
        s in lower for s in ("curl", "connect", "resolve host", "timed out", "timeout", "network"))


def storage_error(uri: str, exc: BaseException) -> storage.StorageError:
    """A one-line StorageError naming the endpoint (never a secret). Refused credentials are recognised in the
    spelling of pyarrow's S3 client too (``INVALID_ACCESS_KEY_ID``, ``ACCESS_DENIED``)."""
    if _refused(str(exc)):
        return storage.StorageError(
            f"storage error at {storage.describe(uri)}: the credentials were refused: check AWS_ACCESS_KEY_ID / "
            f"AWS_SECRET_ACCESS_KEY (or the node's instance profile) for this bucket [{type(exc).__name__}]")
    return storage._wrap(uri, exc)


# --------------------------------------------------------------------------------------------------------------
# Listing and the inputs of a run
# --------------------------------------------------------------------------------------------------------------

def list_parquet(uri: str) -> list[tuple[str, int, int]]:
    """``(uri, size, mtime_ns)`` of the ``*.parquet`` files under ``uri``, sorted; StorageError naming the
    endpoint when storage cannot be listed."""
    import pyarrow.fs as pafs

    fs, path = storage.filesystem(uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except (OSError, pa.ArrowException) as exc:
        raise storage_error(uri, exc) from exc
    out = []
    for i in infos:
        if i.type == pafs.FileType.File and i.path.endswith(".parquet"):
            mtime = i.mtime_ns if i.mtime_ns is not None else 0
            out.append((("s3://" + i.path) if storage.is_s3(uri) else i.path, int(i.size or 0), int(mtime)))
    return sorted(out)


@dataclass
class Inputs:
    """What :func:`check_inputs` found: each dataset's raw folder, its raw files and its ``dataset.json``."""

    raws: dict[str, str]
    listings: dict[str, list[tuple[str, int, int]]]
    cards: dict[str, dict]


def check_inputs(datasets: dict[str, int] | list[str], run_dir: str,
                 raw_uris: dict[str, str] | None = None) -> Inputs:
    """The cheap checks, before Ray or any model starts: every dataset name is safe, its raw folder can be listed
    and holds raw clip files, its ``dataset.json`` exists and is valid JSON with labels (and, when it says how many
    clips it holds, a count). One line naming the folder or file and the fix otherwise
    (:class:`~mujo.errors.InputError`, or StorageError for storage)."""
    from mujo.run import RunLayout  # here, not at import time: the file workers import this module

    layout = RunLayout(run_dir)
    raws = {}
    for d in datasets:
        check_name(d, "dataset name")
        raws[d] = absolute((raw_uris or {}).get(d) or layout.raw(d))
    # storage first: one clear line (naming the endpoint) when it is unreachable or refuses the credentials
    listings = {d: list_parquet(raw) for d, raw in raws.items()}
    cards = {}
    for d, found in listings.items():
        if not found:
            raise InputError(f"{d}: no raw clip files (*.parquet) under {storage.describe(raws[d])}; run generation "
                             "(jobs/generate.py) or a dataset adapter (jobs/ingest.py) first, or fix storage.root")
        card_uri = storage.join(raws[d], "dataset.json")
        if not storage.exists(card_uri):
            raise InputError(f"{d}: {storage.describe(card_uri)} is missing; it is written with the raw clips by "
                             "jobs/generate.py or jobs/ingest.py: run that again")
        cards[d] = storage.read_json(card_uri)
        labels = cards[d].get("labels") if isinstance(cards[d], dict) else None
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            raise InputError(f"{d}: {storage.describe(card_uri)} has no list of label names ('labels'); write it "
                             "again with jobs/generate.py or jobs/ingest.py")
        clips = cards[d].get("clips", 0)
        if isinstance(clips, bool) or not isinstance(clips, int) or clips < 0:
            raise InputError(f"{d}: {storage.describe(card_uri)} says it holds {clips!r} clips ('clips'), not a "
                             "count; write it again with jobs/generate.py or jobs/ingest.py")
    return Inputs(raws, listings, cards)


# --------------------------------------------------------------------------------------------------------------
# One raw file: footer, schema, label texts, clip ids
# --------------------------------------------------------------------------------------------------------------

def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or (
        pa.types.is_dictionary(t) and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)))


def _is_numeric_list(t: pa.DataType) -> bool:
    return ((pa.types.is_list(t) or pa.types.is_large_list(t))
            and (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)))


def check_raw_schema(schema: pa.Schema) -> str:
    """Why a raw clip file's schema cannot be preprocessed ('' when it can): missing or mistyped columns."""
    names = set(schema.names)
    problems = []
    missing = [c for c in STRING_FIELDS if c not in names]
    streams = [t for t in TENSORS if t in names]
    if not streams:
        missing.append(" or ".join(f"'{t}'" for t in TENSORS) + " (no stream at all)")
    for t in streams:
        missing += [f"{t}_shape"] if f"{t}_shape" not in names else []
        missing += [f"{t}_hz"] if f"{t}_hz" not in names and f"{t}_t" not in names else []
    if missing:
        problems.append("missing required column(s): " + ", ".join(c if c.startswith("'") else f"'{c}'"
                                                                   for c in missing))
    typed = [(c, _is_string) for c in STRING_FIELDS if c in names]
    typed += [(t, _is_numeric_list) for t in streams] + [(f"{t}_t", _is_numeric_list) for t in streams
                                                          if f"{t}_t" in names]
    typed += [(f"{t}_shape", _is_numeric_list) for t in streams if f"{t}_shape" in names]
    wrong = [f"'{c}' is {schema.field(c).type}" for c, ok in typed if not ok(schema.field(c).type)]
    if wrong:
        problems.append("wrong column type(s): " + ", ".join(wrong))
    return "; ".join(problems)


def check_file(f: RawFile) -> RawFile:
    """Read ``f``'s footer (cheap) and check its schema; sets ``rows``, ``reason`` and ``texts`` (the distinct
    normalised label texts, read here so that a file worker can ask for the embeddings before it reads the file)."""
    import pyarrow.parquet as pq

    fs, path = storage.filesystem(f.uri)
    try:
        with fs.open_input_file(path) as handle:
            meta = pq.ParquetFile(handle).metadata
            schema = meta.schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as exc:
        if storage_problem(str(exc)):
            raise storage_error(f.uri, exc) from exc
        f.reason = f"unreadable Parquet file ({f.size} bytes): {exc}"
        return f
    f.rows = int(meta.num_rows)
    f.reason = check_raw_schema(schema)
    if not f.reason:
        columns = ["label_text"] + (["texts"] if "texts" in schema.names else [])  # raw 1.2: alternatives too
        try:
            with fs.open_input_file(path) as handle:
                read = pq.ParquetFile(handle).read(columns=columns)
        except (OSError, pa.ArrowException) as exc:
            if storage_problem(str(exc)):
                raise storage_error(f.uri, exc) from exc
            f.reason = f"unreadable Parquet data ({', '.join(map(repr, columns))}): {exc}"
            return f
        labels = read.column("label_text").to_pylist()
        texts = {t for t in map(normalize_label, (str(x) for x in labels)) if t}
        if "texts" in columns:
            texts |= {t for label, alts in zip(labels, read.column("texts").to_pylist()) if alts
                      for t in clip_captions(str(label), [str(a) for a in alts])}
        f.texts = sorted(texts)
    return f


def clip_ids(f: RawFile) -> list[str] | None:
    """The ``clip_id`` column of a raw file (None when unreadable: its own check quarantines it)."""
    return clip_ids_and_alternatives(f)[0]


def clip_ids_and_alternatives(f: RawFile) -> tuple[list[str] | None, bool]:
    """The ``clip_id`` column of a raw file (None when unreadable: its own check quarantines it) and whether any of
    its clips has more than one distinct normalised caption (raw format 1.2's ``texts``; False without the column).
    One read of the small columns; a dataset whose files hold alternatives gets caption columns in its shards."""
    import pyarrow.parquet as pq

    fs, path = storage.filesystem(f.uri)
    try:
        with fs.open_input_file(path) as handle:
            pf = pq.ParquetFile(handle)
            alternatives = "texts" in pf.schema_arrow.names and "label_text" in pf.schema_arrow.names
            read = pf.read(columns=["clip_id"] + (["label_text", "texts"] if alternatives else []))
    except (OSError, pa.ArrowException, KeyError) as exc:
        if storage_problem(str(exc)):
            raise storage_error(f.uri, exc) from exc
        return None, False
    ids = [str(x) for x in read.column("clip_id").to_pylist()]
    if alternatives:
        pairs = zip(read.column("label_text").to_pylist(), read.column("texts").to_pylist())
        alternatives = any(alts and len(clip_captions(str(label), [str(a) for a in alts])) > 1 for label, alts in pairs)
    return ids, alternatives


def mark_duplicates(files: list[RawFile], ids: list[list[str] | None]) -> int:
    """Quarantine every repeat of a clip id within one dataset, in and across its raw files (the first occurrence
    in file order, then row order, is kept): a repeated clip would put duplicate windows in the shards, and across
    splits leak test clips into training. Sets each file's ``skip``; returns the number of repeats."""
    first: dict[str, tuple[str, int]] = {}
    repeats = 0
    for f, file_ids in zip(files, ids):
        f.skip = {}
        for row, cid in enumerate(file_ids or []):
            if cid in first:
                where, at = first[cid]
                f.skip[row] = f"duplicate clip_id {cid!r}: first in {posixpath.basename(where)} row {at}; quarantined"
                repeats += 1
            else:
                first[cid] = (f.uri, row)
    return repeats
