"""The sample format: round trips through local and S3 storage, tensors intact, versions enforced."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mujo import storage
from mujo.schema import (SCHEMA_VERSION, VERSION_KEY, SampleFormat, SchemaError, SchemaVersionError, batch_to_table,
                         check_shards, empty_batch, read_shard, table_to_batch, write_shard)

FMT = SampleFormat(video_dim=32, text_dim=16)


def make_batch(n: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    b = empty_batch(n, FMT)
    for i in range(n):
        b["sample_id"][i] = f"clip{i // 2}-w{i}"
        b["clip_id"][i] = f"clip{i // 2}"
    b["subject"][:] = "s1"
    b["dataset"][:] = "unit"
    b["split"][:] = "train"
    b["label_text"][:] = "L arm curl x12"
    b["activity"][:] = "bicep_curls"
    b["text"][:] = "left arm curl"
    b["class_id"][:] = 2
    for name, shape in FMT.tensor_shapes().items():
        b[name] = rng.normal(size=(n, *shape)).astype(np.float32)
    b["has_pose"][:] = b["has_acc"][:] = b["has_text"][:] = True
    b["has_video"][:] = [True, False, True, False, True]
    return b


def assert_same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        if a[k].dtype == object:
            assert list(a[k]) == list(b[k]), k
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_round_trip(where, tmp_path, request):
    root = str(tmp_path) if where == "local" else request.getfixturevalue("s3_root") + "/schema"
    batch = make_batch()
    uri = storage.join(root, "train", "shard-0.parquet")
    write_shard(batch_to_table(batch, FMT), uri)
    table = read_shard(uri)
    assert isinstance(table.schema.field("pose").type, pa.FixedShapeTensorType)
    assert table.schema.field("pose").type.shape == [100, 17, 3]
    assert table.schema.metadata[VERSION_KEY] == SCHEMA_VERSION.encode()
    back = table_to_batch(table)
    assert back["pose"].shape == (5, 100, 17, 3) and back["pose"].dtype == np.float32
    assert_same(batch, back)
    assert check_shards([uri]) == FMT
    assert not any(".tmp-" in p for p in storage.list_files(root))  # atomic write left no temporary file


def _with_version(table: pa.Table, version: str) -> pa.Table:
    return table.replace_schema_metadata({**table.schema.metadata, VERSION_KEY: version.encode()})


def test_other_major_version_refused(tmp_path):
    table = _with_version(batch_to_table(make_batch(), FMT), "2.0")
    path = str(tmp_path / "future.parquet")
    pq.write_table(table, path)
    with pytest.raises(SchemaVersionError) as err:
        read_shard(path)
    msg = str(err.value)
    assert "future.parquet" in msg and "2.0" in msg and SCHEMA_VERSION in msg and "Re-run preprocessing" in msg
    with pytest.raises(SchemaVersionError):
        check_shards([path])


def test_same_major_other_minor_accepted(tmp_path):
    path = str(tmp_path / "minor.parquet")
    pq.write_table(_with_version(batch_to_table(make_batch(), FMT), "1.9"), path)
    assert read_shard(path).num_rows == 5


def test_foreign_and_corrupt_files_named(tmp_path):
    plain = str(tmp_path / "plain.parquet")
    pq.write_table(pa.table({"x": [1, 2]}), plain)
    with pytest.raises(SchemaVersionError, match="plain.parquet.*not a mujo sample shard"):
        read_shard(plain)
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(SchemaError, match="corrupt.parquet.*corrupt or truncated"):
        read_shard(str(corrupt))


def test_batch_validation():
    batch = make_batch()
    bad = dict(batch)
    bad["acc"] = batch["acc"].copy()
    bad["acc"][1, 3, 2] = np.nan
    with pytest.raises(SchemaError, match="'acc'.*NaN"):
        batch_to_table(bad, FMT)
    missing = {k: v for k, v in batch.items() if k != "has_video"}
    with pytest.raises(SchemaError, match="has_video"):
        batch_to_table(missing, FMT)
    wrong = dict(batch, pose=np.zeros((5, 100, 18, 3), np.float32))
    with pytest.raises(SchemaError, match=r"\(100, 18, 3\)"):
        batch_to_table(wrong, FMT)
