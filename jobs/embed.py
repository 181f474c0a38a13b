"""Joint-space embeddings of every window of a preprocessed dataset, per modality, with Ray Data -> Parquet; then
text -> sensor retrieval and labelling by nearest label text with mujo.retrieval (docs/model-path.md).

    python jobs/embed.py --config jobs/configs/finetune.yaml
    python jobs/embed.py --config jobs/configs/finetune.yaml --set embed.modalities=[acc,pose] --set embed.splits=[test]
"""

from _common import echo, parse, run

from mujo import storage


def main() -> None:
    cfg = parse(__doc__.splitlines()[0])
    from mujo.pipelines.embed import run_embed
    from mujo.pipelines.predict import InputError
    from mujo.pipelines.preprocess import read_manifest
    from mujo.raysession import init_ray
    from mujo.run import RunLayout
    from mujo.workflows import prepare

    run_dir = prepare(cfg, start_ray=False)  # Ray starts once the artefact and the input pass
    e = cfg.embed
    layout = RunLayout(run_dir)
    model = e.model or layout.pretrained
    try:
        manifest = read_manifest(run_dir, e.dataset)
    except (storage.StorageError, ValueError):
        raise InputError(f"{layout.manifest(e.dataset)} does not exist: preprocess "
                         f"'{e.dataset}' first (jobs/preprocess.py) or set embed.dataset") from None
    try:
        out = run_embed(model, manifest, e.output or layout.embeddings(e.dataset), e,
                        start_ray=lambda: init_ray(cfg.ray))
    except (storage.StorageError, ValueError) as exc:
        raise InputError(str(exc)) from None
    echo()
    echo(f"embeddings of {manifest.dataset} by {model} (digest {out['model_digest']}): "
          + ", ".join(f"{m} {n} windows" for m, n in out["rows"].items()) + f" -> {out['out']}")
    echo("search them: mujo.retrieval.load_embeddings(...), search(...), label_by_text(...) (docs/model-path.md)")


if __name__ == "__main__":
    run(main)
