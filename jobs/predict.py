"""Run a classifier artefact on recordings with Ray Data: raw clips (any adapter), a bring-your-own card or
preprocessed shards, local or s3:// -> window predictions (Parquet), per-recording timelines and a summary.

    python jobs/predict.py --config jobs/configs/finetune.yaml
    python jobs/predict.py --config jobs/configs/finetune.yaml --set predict.input=my_card.yaml \
        --set predict.source=/data/watch --set predict.ignore_labels=true
"""

from _common import echo, parse, run


def main() -> None:
    cfg = parse(__doc__.splitlines()[0])
    from mujo.classifiers import finetune_output
    from mujo.pipelines.generate import raw_dir
    from mujo.pipelines.predict import run_predict, timeline_table
    from mujo.raysession import init_ray
    from mujo.run import RunLayout
    from mujo.workflows import prepare

    run_dir = prepare(cfg, start_ray=False)  # Ray starts once the artefact and the input pass
    p = cfg.predict
    model = p.model or finetune_output(cfg)
    out = p.output or RunLayout(run_dir).predictions(p.name)
    summary = run_predict(model, p.input or raw_dir(run_dir, cfg.finetune.dataset), out, p,
                          start_ray=lambda: init_ray(cfg.ray))
    echo()
    echo(timeline_table(summary))
    echo(f"predictions under {out} (windows/, segments/, recordings.csv, summary.json)")


if __name__ == "__main__":
    run(main)
