"""Export a sensor-only classifier artefact (acc input, one 2-s window) to TorchScript and ONNX, checked against
PyTorch with ONNX Runtime on real windows of its dataset, with a model card stating the exact input contract.

    python jobs/export.py --config jobs/configs/finetune.yaml
    python jobs/export.py --config jobs/configs/finetune.yaml --set export.model=runs/demo/models/synthhar/acc-finetuned-1
"""

import logging

from _common import echo, parse, run

from mujo import storage

log = logging.getLogger("export")


def main() -> None:
    cfg = parse(__doc__.splitlines()[0])
    from mujo.classifiers import finetune_output
    from mujo.models.artefact import ArtefactError, load_classifier
    from mujo.models.export import check_exportable, check_windows, export_classifier
    from mujo.pipelines.preprocess import read_manifest

    from mujo.workflows import prepare

    prepare(cfg, start_ray=False)  # no Ray: exporting is one process's work
    model = cfg.export.model or finetune_output(cfg)
    artefact = load_classifier(model)
    check_exportable(artefact)
    dataset = artefact.card.provenance.dataset
    try:
        manifest = read_manifest(cfg.run_dir, dataset)
    except (storage.StorageError, ValueError):
        raise ArtefactError(f"{model}: its dataset '{dataset}' has no preprocessed shards under {cfg.run_dir} to check "
                            "the export on: run jobs/preprocess.py for it, or set run_name/storage.root to the run "
                            "that trained the classifier") from None
    windows = check_windows(manifest, cfg.export.check_windows)
    if len(windows) < cfg.export.check_windows:
        log.warning("only %d real windows in %s (export.check_windows=%d): checked on all of them", len(windows),
                    dataset, cfg.export.check_windows)
    out = cfg.export.output or storage.join(model, "export")
    card = export_classifier(artefact, out, windows, opset=cfg.export.opset, tolerance=cfg.export.tolerance)
    c = card["check"]
    echo()
    echo(f"exported {model} -> {out}: classifier.onnx, classifier.torchscript.pt, model_card.json")
    echo(f"checked on {c['windows']} real windows: max |p_onnx - p_torch| = {c['max_abs_diff_onnx']:.2e}, "
          f"max |p_torchscript - p_torch| = {c['max_abs_diff_torchscript']:.2e} (tolerance {c['tolerance']:g})")


if __name__ == "__main__":
    run(main)
