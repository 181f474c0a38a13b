"""The windowed sample format: one Parquet row per 2-s window (documented in docs/sample-format.md).

This module owns the format in code: column names, tensor shapes, the schema version, and the functions that
turn columnar numpy batches into Arrow tables and back. Tensor columns use Arrow's canonical
``fixed_shape_tensor`` extension type, so Parquet, pyarrow and Ray Data all see real tensors, never Python objects.

A shard carries its schema version in the Parquet key-value metadata; a reader refuses a shard whose major version
differs from :data:`SCHEMA_VERSION` and says which file and which versions. Minor versions only add optional
columns: 1.1 adds a window's alternative captions (``captions``, ``caption_emb``, ``caption_count``,
``caption_key``; present when the format's :attr:`SampleFormat.captions` is above 0), so a 1.0 shard reads as a
format without them and a 1.0 reader ignores them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mujo.names import SPLITS  # the one list of split names (they become folder names)

SCHEMA_VERSION = "1.1"  # 1.1: optional caption alternatives per window (shards of 1.0 still read)
VERSION_KEY = b"mujo.schema_version"
VIDEO_DIM_KEY = b"mujo.video_dim"
TEXT_DIM_KEY = b"mujo.text_dim"
CAPTIONS_KEY = b"mujo.captions"  # K of the caption columns (absent: none, as in schema 1.0)

MODALITIES: tuple[str, ...] = ("video", "pose", "acc", "text")
FS = 50  # Hz
WINDOW = 100  # frames (2 s at 50 Hz)
STRIDE = 50  # frames
NUM_JOINTS = 17
ACC_CHANNELS = 6  # left wrist xyz, right wrist xyz (m/s^2)
DEFAULT_VIDEO_DIM = 512
DEFAULT_TEXT_DIM = 384

ID_COLUMNS: tuple[str, ...] = ("sample_id", "clip_id", "subject", "dataset", "split")
LABEL_COLUMNS: tuple[str, ...] = ("label_text", "activity", "class_id", "text")
TENSOR_MODALITY_COLUMN = {"video": "video", "pose": "pose", "acc": "acc", "text": "text_emb"}
MASK_COLUMNS = {m: f"has_{m}" for m in MODALITIES}
CAPTION_COLUMNS: tuple[str, ...] = ("captions", "caption_emb", "caption_count", "caption_key")  # schema 1.1, optional


class SchemaError(ValueError):
    """A shard or batch does not follow the sample format."""


class SchemaVersionError(SchemaError):
    """A shard was written with an incompatible schema major version."""


@dataclass(frozen=True)
class SampleFormat:
    """The shape parameters of one corpus's sample format."""

    video_dim: int = DEFAULT_VIDEO_DIM
    text_dim: int = DEFAULT_TEXT_DIM
    captions: int = 0  # K: alternative captions kept per window (caption columns); 0: none (text_emb only)

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {
            "pose": (WINDOW, NUM_JOINTS, 3),
            "acc": (WINDOW, ACC_CHANNELS),
            "video": (self.video_dim,),
            "text_emb": (self.text_dim,),
        }
        if self.captions:
            shapes["caption_emb"] = (self.captions, self.text_dim)
        return shapes

    def arrow_schema(self) -> pa.Schema:
        fields: list[pa.Field] = [pa.field(c, pa.string(), nullable=False) for c in ID_COLUMNS]
        fields += [
            pa.field("label_text", pa.string(), nullable=False),
            pa.field("activity", pa.string(), nullable=False),
            pa.field("class_id", pa.int32(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
        ]
        for name, shape in self.tensor_shapes().items():
            fields.append(pa.field(name, pa.fixed_shape_tensor(pa.float32(), shape), nullable=False))
        fields += [pa.field(c, pa.bool_(), nullable=False) for c in MASK_COLUMNS.values()]
        metadata = {
            VERSION_KEY: SCHEMA_VERSION.encode(),
            VIDEO_DIM_KEY: str(self.video_dim).encode(),
            TEXT_DIM_KEY: str(self.text_dim).encode(),
        }
        if self.captions:  # schema 1.1 (caption_emb is among the tensors): the captions, their count, the draw key
            fields += [pa.field("captions", pa.list_(pa.string()), nullable=False),
                       pa.field("caption_count", pa.int32(), nullable=False),
                       pa.field("caption_key", pa.int64(), nullable=False)]
            metadata[CAPTIONS_KEY] = str(self.captions).encode()
        return pa.schema(fields, metadata=metadata)

    @classmethod
    def from_arrow(cls, schema: pa.Schema, source: str = "<schema>") -> "SampleFormat":
        check_version(schema, source)
        meta = schema.metadata or {}
        captions = int(meta.get(CAPTIONS_KEY, b"0"))
        if captions and not set(CAPTION_COLUMNS) <= set(schema.names):
            raise SchemaError(f"{source}: metadata says {captions} captions per window but the caption columns "
                              f"{[c for c in CAPTION_COLUMNS if c not in schema.names]} are missing; the shard is not "
                              "a complete mujo shard: re-run preprocessing")
        return cls(int(meta[VIDEO_DIM_KEY]), int(meta[TEXT_DIM_KEY]), captions)


def _major(version: str) -> str:
    return version.split(".", 1)[0]


def check_version(schema: pa.Schema, source: str) -> None:
    """Raise :class:`SchemaVersionError` unless ``schema`` has this module's major schema version."""
    meta = schema.metadata or {}
    found = meta.get(VERSION_KEY)
    if found is None:
        raise SchemaVersionError(
            f"{source}: not a mujo sample shard (no '{VERSION_KEY.decode()}' in its Parquet metadata). "
            "Write shards with mujo.schema.write_shard or re-run preprocessing."
        )
    found_s = found.decode()
    if _major(found_s) != _major(SCHEMA_VERSION):
        raise SchemaVersionError(
            f"{source}: shard has schema version {found_s}, this reader supports {SCHEMA_VERSION} "
            f"(major {_major(SCHEMA_VERSION)}). Re-run preprocessing with this version of mujo, or read it with "
            f"the mujo release that wrote it."
        )


def tensor_array(values: np.ndarray, shape: tuple[int, ...]) -> pa.ExtensionArray:
    """A numpy array of shape (N, *shape) as an Arrow ``fixed_shape_tensor`` column (zero-copy when contiguous)."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.shape[1:] != tuple(shape):
        raise SchemaError(f"tensor of shape {values.shape[1:]} where {tuple(shape)} is required")
    size = int(np.prod(shape))
    storage = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), size)
    return pa.ExtensionArray.from_storage(pa.fixed_shape_tensor(pa.float32(), shape), storage)


def to_numpy_tensor(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """An Arrow fixed-shape tensor column as one numpy array (N, *shape)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.to_numpy_ndarray()


def batch_to_table(batch: Mapping[str, np.ndarray], fmt: SampleFormat) -> pa.Table:
    """Build a sample table from a columnar batch, validating every column's presence, dtype and shape."""
    schema = fmt.arrow_schema()
    missing = [f.name for f in schema if f.name not in batch]
    if missing:
        raise SchemaError(f"sample batch lacks column(s) {missing}; see docs/sample-format.md")
    shapes = fmt.tensor_shapes()
    n = len(batch["sample_id"])
    if fmt.captions:
        counts = np.asarray(batch["caption_count"])
        lengths = np.array([len(c) for c in batch["captions"]])
        if len(counts) != len(lengths) or (counts != lengths).any() or (counts > fmt.captions).any():
            raise SchemaError(f"'caption_count' must be the length of 'captions' and at most {fmt.captions}")
    arrays = []
    for field in schema:
        values = batch[field.name]
        if len(values) != n:
            raise SchemaError(f"column '{field.name}' has {len(values)} rows, 'sample_id' has {n}")
        if field.name in shapes:
            values = np.asarray(values, dtype=np.float32)
            if not np.isfinite(values).all():
                raise SchemaError(f"column '{field.name}' holds NaN or infinite values")
            arrays.append(tensor_array(values, shapes[field.name]))
        elif pa.types.is_list(field.type):  # the captions: one list of strings per row
            arrays.append(pa.array([[str(x) for x in v] for v in values], type=field.type))
        else:
            arrays.append(pa.array(np.asarray(values).tolist(), type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def table_to_batch(table: pa.Table) -> dict[str, np.ndarray]:
    """A sample table as a columnar dict of numpy arrays (tensors as float32 arrays, strings as object arrays)."""
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        col = table.column(name)
        if isinstance(col.type, pa.FixedShapeTensorType):
            out[name] = to_numpy_tensor(col)
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out


def write_shard(table: pa.Table, uri: str) -> None:
    """Write a sample shard atomically (temporary name, then moved), local or ``s3://``."""
    from mujo import storage

    if table.schema.metadata is None or VERSION_KEY not in table.schema.metadata:
        raise SchemaError("refusing to write a table without the mujo schema version in its metadata")
    storage.write_table(table, uri)


def read_shard(uri: str) -> pa.Table:
    """Read one shard (local or ``s3://``), refusing an incompatible schema version with a message naming it."""
    from mujo import storage

    filesystem, path = storage.filesystem(uri)
    try:
        schema = pq.read_schema(path, filesystem=filesystem)
    except (OSError, pa.ArrowInvalid) as exc:
        raise SchemaError(f"{uri}: cannot read Parquet footer ({exc}). The shard is corrupt or truncated; "
                          "delete it and re-run preprocessing.") from exc
    check_version(schema, uri)
    return pq.read_table(path, filesystem=filesystem)


def check_shards(uris: list[str]) -> SampleFormat:
    """Check every shard's footer (cheap) and that all share one format; return it."""
    from mujo import storage

    if not uris:
        raise SchemaError("no sample shards given")
    formats = {}
    for p in uris:
        filesystem, path = storage.filesystem(p)
        try:
            schema = pq.read_schema(path, filesystem=filesystem)
        except (OSError, pa.ArrowInvalid) as exc:
            raise SchemaError(f"{p}: cannot read Parquet footer ({exc}); delete it and re-run preprocessing") from exc
        formats[p] = SampleFormat.from_arrow(schema, p)
    distinct = set(formats.values())
    if len(distinct) > 1:
        raise SchemaError(f"shards disagree on their format: {sorted(distinct, key=str)}")
    return distinct.pop()


def empty_batch(n: int, fmt: SampleFormat) -> dict[str, np.ndarray]:
    """A batch of ``n`` samples with every modality absent (zeros, masks False); callers fill in what they have."""
    batch: dict[str, np.ndarray] = {c: np.full(n, "", dtype=object) for c in ID_COLUMNS + ("label_text", "activity", "text")}
    batch["class_id"] = np.full(n, -1, dtype=np.int32)
    for name, shape in fmt.tensor_shapes().items():
        batch[name] = np.zeros((n, *shape), dtype=np.float32)
    for c in MASK_COLUMNS.values():
        batch[c] = np.zeros(n, dtype=bool)
    if fmt.captions:  # schema 1.1: no caption until a caller sets them
        batch["captions"] = np.empty(n, dtype=object)
        batch["captions"][:] = [[] for _ in range(n)]
        batch["caption_count"] = np.zeros(n, dtype=np.int32)
        batch["caption_key"] = np.zeros(n, dtype=np.int64)
    return batch
