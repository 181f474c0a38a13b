"""Classifier artefacts (mujo.models.artefact, mujo.classifiers): finetune -> save -> load -> predict reproduces the
trained model exactly; the card carries classes, window contract, metrics and provenance; a damaged, foreign or
newer-major artefact is refused with a message naming the file and the fix. No Ray: the tiny dataset is made by
the preprocessing functions in this process."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _model_path_data import make_run
from mujo import storage
from mujo.classifiers import finetune_output, train_artefact
from mujo.evaluate.data import load_arrays
from mujo.models.artefact import CARD, CONFUSION, WEIGHTS, ArtefactError, load_classifier


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cfg, manifest, pretrained = make_run(str(tmp_path_factory.mktemp("artefact")))
    out = train_artefact(cfg, manifest, pretrained, finetune_output(cfg))
    return cfg, manifest, pretrained, out


def test_round_trip_reproduces_in_memory_predictions_exactly(trained):
    cfg, manifest, _, out = trained
    loaded = load_classifier(out["artefact"])
    x_test, y_test = load_arrays(manifest, ["acc"], ["test"])["test"]
    probs = loaded.predict_proba(x_test, batch_size=256)
    np.testing.assert_array_equal(probs, out["_test_probabilities"])  # same weights, same batches: bit-identical
    np.testing.assert_array_equal(probs.argmax(1), out["_test_predictions"])
    # and the weights themselves
    mine = {k: v for k, v in out["_model"].state_dict().items()}
    for k, v in loaded.model.state_dict().items():
        if k.startswith(("head.", "backbone.encoders.acc.", "backbone.projections.acc.", "backbone.norms.acc.")):
            assert torch.equal(v, mine[k]), k


def test_card_states_classes_contract_metrics_and_provenance(trained):
    cfg, manifest, pretrained, out = trained
    card = load_classifier(out["artefact"]).card
    assert card.labels == manifest.labels and card.classes[1].text == "jumping jacks"
    acc = card.window.inputs["acc"]
    assert card.window.rate_hz == 50 and card.window.window_frames == 100 and acc.shape == [100, 6]
    assert acc.units == "m/s^2" and "gravity" in acc.notes and acc.channels[0] == "left_x"
    assert card.metrics.val_macro_f1 == pytest.approx(out["val_macro_f1"])
    assert set(card.metrics.per_class_f1) == set(manifest.labels)
    assert np.asarray(card.metrics.confusion_matrix).sum() == manifest.rows["test"]
    assert card.provenance.pretrained == pretrained and len(card.provenance.pretrained_digest) == 64
    assert card.provenance.dataset == "tinyhar" and len(card.provenance.manifest_digest) == 64
    assert card.provenance.config["finetune"]["inputs"] == ["acc"] and card.provenance.package_version
    assert storage.read_bytes(storage.join(out["artefact"], CONFUSION))[:4] == b"\x89PNG"


def _copy(src: str, dst) -> str:
    dst.mkdir()
    for name in (CARD, WEIGHTS):
        (dst / name).write_bytes(storage.read_bytes(storage.join(src, name)))
    return str(dst)


def test_bad_artefacts_are_refused_naming_the_file_and_the_fix(trained, tmp_path):
    _, _, pretrained, out = trained
    with pytest.raises(ArtefactError, match=r"classifier\.json: no classifier card: .* is a pretrained encoder"):
        load_classifier(pretrained)  # a pretrained encoder is not a classifier
    newer = _copy(out["artefact"], tmp_path / "newer")
    doc = json.loads((tmp_path / "newer" / CARD).read_text())
    (tmp_path / "newer" / CARD).write_text(json.dumps({**doc, "version": "2.0"}))
    with pytest.raises(ArtefactError, match=r"classifier\.json: classifier format version 2\.0.*retrain it"):
        load_classifier(newer)
    broken = _copy(out["artefact"], tmp_path / "broken")
    (tmp_path / "broken" / CARD).write_text(json.dumps({**doc, "classes": "squats"}))
    with pytest.raises(ArtefactError, match=r"classifier\.json: invalid classifier card \(classes"):
        load_classifier(broken)
    swapped = _copy(out["artefact"], tmp_path / "swapped")
    (tmp_path / "swapped" / WEIGHTS).write_bytes(b"not weights")
    with pytest.raises(ArtefactError, match=r"classifier\.safetensors: the weights do not match"):
        load_classifier(swapped)
