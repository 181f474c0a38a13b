"""Executing a plan: the only module of preprocessing that uses Ray (imported inside functions, so that the rest of
the package, and a local run, never pay for it).

``executor="ray"``: Ray Data streams the raw files to a pool of file workers (:class:`FileWorker`, actors,
``preprocess.window_cpus`` each, as many as the cluster holds, growing with it up to ``max_file_workers``), one raw
part file per call, start to end (:func:`.window.window_file` then :func:`.window.write_file`). An actor rather than
a task per file: its process stays up for the whole run, so its imports and first-file warm-up are paid once, and
Ray Data queues the next file on it while it works on the current one (a task per file waited for dispatch and, at
first, for a new worker process; figures in ``benchmarks/README.md``).

Text embeddings come from a pool of :class:`EmbedText` actors (``preprocess.text_actors``, each loading the sentence
model once; ``text_actor_cpus`` each, none by default), started before the driver plans the run, so that the model
loads while the files are checked and the first ones windowed. A file worker asks its embedding actor (chosen by
the file) for the file's label texts, in calls of at most ``text_batch_size``, before it windows. Samples do not
travel to the actors: a three-stage pipeline that moved them through the object store was slower
(``benchmarks/README.md``).

``executor="local"``: the same functions, sequentially, in this process, the model loaded once here; the baseline of
``benchmarks/preprocess_throughput.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from mujo import storage
from mujo.pipelines.preprocess.window import CachedEmbedder, process_file, skip_rows, window_file, write_file

if TYPE_CHECKING:  # annotations only: the file workers and embedding actors import this module, not pydantic
    from mujo.config import PreprocessConfig
    from mujo.pipelines.preprocess.plan import Plan


class EmbedText:
    """Ray actor: loads the sentence model once and embeds texts for every file worker (see CachedEmbedder)."""

    def __init__(self) -> None:
        self.embedder = CachedEmbedder()

    def embed(self, texts: list[str]) -> dict[str, np.ndarray]:
        return dict(zip(texts, self.embedder(list(texts))))


def start_embedders(cfg: PreprocessConfig) -> list:
    """The embedding actors, started before the driver plans the run: the model loads (seconds: torch and the
    sentence model) while the raw files are listed and checked and the first ones are windowed."""
    import ray

    if not ray.is_initialized():
        ray.init()
    actor_cls = ray.remote(num_cpus=cfg.text_actor_cpus, max_restarts=2, max_task_retries=2)(EmbedText)
    return [actor_cls.remote() for _ in range(cfg.text_actors)]


def stop_embedders(embedders: list) -> None:
    if embedders:
        import ray

        for actor in embedders:
            ray.kill(actor)


def _remote_embed(actor: Any, first: list[str], batch_size: int) -> Callable[[list[str]], np.ndarray]:
    """An ``embed`` callable served by the actor, in calls of at most ``batch_size`` texts; the file's texts (known
    from the driver's read of its ``label_text``) are requested before windowing starts, so the answer is usually
    there when needed."""
    import ray

    def ask(texts: list[str]) -> list:
        return [actor.embed.remote(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]

    pending = ask(first)
    known: dict[str, np.ndarray] = {}

    def embed(texts: list[str]) -> np.ndarray:
        nonlocal pending
        for answer in ray.get(pending):  # Ray lends this task's CPU back while it waits
            known.update(answer)
        pending = []
        missing = sorted(set(texts) - set(known))
        for answer in ray.get(ask(missing)):
            known.update(answer)
        return np.stack([known[t] for t in texts])

    return embed


class FileWorker:
    """The Ray Data stage, an actor: raw file rows (one per batch) -> their progress records (JSON)."""

    def __init__(self, contexts: dict[str, dict], trim_fraction: float, shard_rows: int, out_dirs: dict[str, str],
                 embedders: list, text_batch_size: int) -> None:
        self.contexts, self.out_dirs, self.embedders = contexts, out_dirs, embedders
        self.trim_fraction, self.shard_rows, self.text_batch_size = trim_fraction, shard_rows, text_batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        windowed = []
        for i in range(len(batch["file"])):
            task = {k: (v[i].item() if isinstance(v[i], np.generic) else v[i]) for k, v in batch.items()}
            task["identity"] = json.loads(task["identity"])
            ctx = self.contexts[task["dataset"]]
            actor = self.embedders[int(hashlib.sha1(task["key"].encode()).hexdigest(), 16) % len(self.embedders)]
            embed = _remote_embed(actor, json.loads(task["texts"]), self.text_batch_size)
            chunks = window_file(task["file"], task["dataset"], ctx["format"], ctx["label_map"], self.trim_fraction,
                                 self.shard_rows, skip_rows(task.get("skip")))
            windowed.append((task, chunks, embed))
        records = []
        for task, chunks, embed in windowed:
            records += write_file(task, chunks, self.out_dirs[task["dataset"]], embed)
        return {"record": np.array([json.dumps(r) for r in records], dtype=object)}


def file_workers(cfg: PreprocessConfig, files: int, cluster_cpus: float) -> tuple[int, int]:
    """``(initial, most)`` file workers: as many as the cluster's CPUs hold now at ``window_cpus`` each (besides
    the embedding actors' reservation), at least one; at most one per file or ``max_file_workers``. Ray Data grows
    the pool towards ``most`` when the cluster grows (an autoscaling cluster may start with no worker node)."""
    most = max(1, min(files, cfg.max_file_workers or files))
    fits = int((cluster_cpus - cfg.text_actors * cfg.text_actor_cpus) / cfg.window_cpus + 1e-9)
    return max(1, min(fits, most)), most


def run_ray(plan: Plan, cfg: PreprocessConfig, embedders: list) -> list[dict]:
    """Process ``plan.todo`` with Ray Data's pool of file workers; the new progress records."""
    import ray

    tasks = [{"file": f.uri, "dataset": f.dataset, "key": f.key, "identity": json.dumps(f.identity(plan.params[
        f.dataset])), "clips": -1 if f.rows is None else f.rows, "texts": json.dumps(f.texts),
        "skip": json.dumps({str(k): v for k, v in f.skip.items()})} for f in plan.todo]
    contexts = {d: {"format": plan.formats[d], "label_map": plan.label_maps[d]} for d in plan.raws}
    # One raw file per call, start to end (read, window, embed, write): every shard is a function of its raw file
    # alone, and no sample leaves the process that made it.
    initial, most = file_workers(cfg, len(tasks), ray.cluster_resources().get("CPU", 0.0))
    ds = ray.data.from_items(tasks, override_num_blocks=len(tasks))
    ds = ds.map_batches(FileWorker, fn_constructor_kwargs={
        "contexts": contexts, "trim_fraction": cfg.trim_fraction, "shard_rows": cfg.shard_rows,
        "out_dirs": plan.out_dirs, "embedders": embedders, "text_batch_size": cfg.text_batch_size},
        batch_size=1, batch_format="numpy", num_cpus=cfg.window_cpus,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=most, initial_size=initial))
    from mujo import console

    out = console.get()
    done: set[str] = set()

    def progress(row: dict) -> None:  # a file's records arrive together: count files whose last chunk arrived
        record = json.loads(row["record"])
        if record["chunk"] == record["chunks"] - 1:
            done.add(record["file"])
            out.progress("preprocess files", len(done), len(tasks))

    return [json.loads(r["record"]) for r in take_all(ds, on_row=progress)]


def run_local(plan: Plan, cfg: PreprocessConfig) -> list[dict]:
    """The same functions, sequentially, in this process (the model loaded once, here)."""
    embedder = CachedEmbedder() if plan.todo else None
    records = []
    for f in plan.todo:
        task = {"file": f.uri, "dataset": f.dataset, "key": f.key, "identity": f.identity(plan.params[f.dataset]),
                "clips": -1 if f.rows is None else f.rows, "skip": f.skip}
        records += process_file(task, plan.formats[f.dataset], plan.label_maps[f.dataset], cfg.trim_fraction,
                                cfg.shard_rows, plan.out_dirs[f.dataset], embedder)
    return records


def take_all(ds: Any, on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """Every row of ``ds``, streamed (``on_row`` sees each as it arrives), with a StorageError raised in a worker
    turned back into its one line (Ray Data wraps it in a ``UserCodeException`` task error whose text is the
    worker's whole traceback)."""
    try:
        rows = []
        for row in ds.iter_rows():
            rows.append(row)
            if on_row is not None:
                on_row(row)
        return rows
    except Exception as exc:
        message = _storage_message(exc)
        if message is not None:
            raise storage.StorageError(message) from None
        raise


_STORAGE_LINE = re.compile(r"(?:^|\s)(?:mujo\.storage\.)?StorageError: (.+)$", re.MULTILINE)


def _storage_message(exc: BaseException) -> str | None:
    """The message of a :class:`~mujo.storage.StorageError` behind ``exc``: the exception itself or one in its
    chain (``__cause__``, ``__context__``, the ``cause`` of Ray's task errors), else the last ``StorageError: …``
    line of a remote traceback that Ray kept only as text."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    texts = []
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, storage.StorageError) and not type(e).__module__.startswith("ray"):
            return str(e).splitlines()[0]
        texts.append(str(e))
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    found = [m for text in texts for m in _STORAGE_LINE.findall(text)]
    return found[-1].strip() if found else None
