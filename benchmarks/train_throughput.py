"""Samples/s of the pretraining step fed by Ray Data, divided by the same step fed from in-memory tensors.

Both runs use ``mujo.train.pretrain.train_step`` (the function the Ray Train loop calls) on the same model, loss,
optimizer and batch size, in one process; only the feeding differs:

- Ray Data: ``read_parquet`` of the shards -> ``iter_torch_batches`` with the training loop's local shuffle buffer
  (what ``get_dataset_shard(...).iter_torch_batches`` does inside a worker);
- in memory: the same rows, loaded once as tensors, batched by a random permutation.

The last line is the ratio (goal >= 0.9: the data path must not starve the step).

    .venv/bin/python benchmarks/train_throughput.py                       # makes a small corpus in a temp folder
    .venv/bin/python benchmarks/train_throughput.py --manifest runs/demo/shards/synthfit/manifest.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "platform"))
os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "1")

import torch  # noqa: E402

from mujo import storage  # noqa: E402
from mujo.config import load_config  # noqa: E402
from mujo.losses import MuJoLoss  # noqa: E402
from mujo.models import build_model  # noqa: E402
from mujo.run import Manifest, read_contract  # noqa: E402
from mujo.schema import MASK_COLUMNS, TENSOR_MODALITY_COLUMN, read_shard, table_to_batch  # noqa: E402
from mujo.train.pretrain import train_step  # noqa: E402


def small_corpus(tmp: str):
    from mujo.pipelines.generate import generate
    from mujo.pipelines.preprocess import preprocess

    cfg = load_config(None, [f"storage.root={tmp}", "run_name=bench",
                             "generate.datasets=[{name: bench, subjects: {train: 6, val: 1}, clip_seconds: [14, 18]}]"])
    generate(cfg.generate, cfg.run_dir)
    return preprocess({"bench": 512}, cfg.run_dir, cfg.preprocess)["bench"]


def run(batches, steps: int, cfg, stats) -> float:
    torch.manual_seed(0)
    model = build_model(cfg.model, stats)
    optimizer = torch.optim.AdamW(model.param_groups(0.01), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    loss_fn = MuJoLoss(cfg.model.modalities)
    it = iter(batches)
    train_step(model, model, loss_fn, optimizer, scheduler, next(it), cfg)  # warm-up (allocations, first batch)
    t0 = time.perf_counter()
    n = 0
    for _ in range(steps):
        batch = next(it)
        train_step(model, model, loss_fn, optimizer, scheduler, batch, cfg)
        n += len(batch[MASK_COLUMNS["acc"]])
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", help="a preprocessed dataset's manifest.json (default: make a small corpus)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--shuffle-buffer", type=int, default=1024)
    args = parser.parse_args()

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    tmp = tempfile.mkdtemp(prefix="mujo-bench-")
    manifest = read_contract(args.manifest, Manifest) if args.manifest else small_corpus(tmp)
    cfg = load_config(None, [f"pretrain.batch_size={args.batch}"])
    columns = [TENSOR_MODALITY_COLUMN[m] for m in cfg.model.modalities] + \
              [MASK_COLUMNS[m] for m in cfg.model.modalities]
    shards = manifest.shards["train"]
    rows = sum(manifest.rows_of("train") for _ in [0])
    steps = min(args.steps, rows // args.batch - 1)

    def ray_batches():
        while True:
            ds = ray.data.read_parquet(shards, shuffle="files").select_columns(columns)
            yield from ds.iter_torch_batches(batch_size=args.batch, drop_last=True,
                                             local_shuffle_buffer_size=args.shuffle_buffer)

    tables = [table_to_batch(read_shard(s).select(columns)) for s in shards]
    memory = {c: torch.cat([torch.as_tensor(t[c].copy()) for t in tables]) for c in columns}

    def memory_batches():
        g = torch.Generator().manual_seed(0)
        while True:
            perm = torch.randperm(len(memory[columns[0]]), generator=g)
            for i in range(0, len(perm) - args.batch + 1, args.batch):
                idx = perm[i:i + args.batch]
                yield {c: v[idx] for c, v in memory.items()}

    fed = run(ray_batches(), steps, cfg, {m: st.model_dump() for m, st in manifest.stats.items()})
    mem = run(memory_batches(), steps, cfg, {m: st.model_dump() for m, st in manifest.stats.items()})
    print(f"rows={rows} batch={args.batch} steps={steps} threads={torch.get_num_threads()}")
    print(f"ray data fed: {fed:8.1f} samples/s")
    print(f"in memory:    {mem:8.1f} samples/s")
    print(f"throughput ratio ray-data/in-memory: {fed / mem:.2f} (goal >= 0.9)")
    ray.shutdown()


if __name__ == "__main__":
    main()
