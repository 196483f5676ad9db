"""Feature spaces: raw standardisation, the cached trained CNN, and the user-given InceptionV3."""

from __future__ import annotations

import pickle
import re

import pytest
import torch

from setforge import Cache, ConfigError, DataError, EvalContext
from setforge.plugins._shared import classifiers
from setforge.plugins.evaluate import _features as features
from setforge.plugins.evaluate._features import FeatureParams, embed_rows, resolve_feature_space
from setforge.plugins.evaluate.fid import FrechetDistance as FID
from tests.evaluate._distribution_data import real_split


def test_raw_space_standardises_with_the_real_training_rows():
    train, test = real_split("breast-cancer")
    ectx = EvalContext.from_seed(0, train, test=test)
    space = resolve_feature_space(ectx, FeatureParams(feature_space="auto"), "fid")
    assert space.name == "raw"
    x = train.x.double()
    expected = (test.x.double() - x.mean(0)) / x.std(0)
    torch.testing.assert_close(space.embed(test.x).double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(space.embed(train.x).mean(0), torch.zeros(30), rtol=0, atol=1e-4)


def test_raw_space_keeps_constant_pixels_finite():
    train, _ = real_split("digits")
    assert float(train.x.reshape(len(train), -1)[:, 0].std()) == 0.0  # digits' corner pixel is always 0
    space = resolve_feature_space(EvalContext.from_seed(0, train), FeatureParams(feature_space="raw"), "fid")
    out = space.embed(train.x[:50])
    assert out.shape == (50, 64) and bool(torch.isfinite(out).all())
    assert bool((out[:, 0] == 0).all())


def test_trained_cnn_is_trained_once_and_shared_through_the_cache(monkeypatch):
    train, test = real_split("digits", train_share=0.3)
    calls = []
    real_train = classifiers.train_classifier

    def counting(*args, **kwargs):
        calls.append(kwargs.get("epochs"))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(classifiers, "train_classifier", counting)
    cache = Cache()
    params = FeatureParams(cnn_epochs=2)
    first = EvalContext.from_seed(0, train, test=test, cache=cache)
    space = resolve_feature_space(first, params, "fid")
    assert space.name == "trained-cnn" and calls == [2]
    feats = embed_rows(first, space, test)
    assert feats.shape == (len(test), 128) and feats.dtype == torch.float32
    # Another evaluator of the same run (same cache, same data and params) reuses the network.
    again = resolve_feature_space(EvalContext.from_seed(0, train, test=test, cache=cache), params, "kid")
    assert calls == [2]
    torch.testing.assert_close(again.embed(test.x), feats)
    # The features are the penultimate layer: a linear read-out of them separates the classes.
    assert len(feats.unique(dim=0)) == len(test)
    from sklearn.linear_model import LogisticRegression

    readout = LogisticRegression(max_iter=2000).fit(feats[::2].numpy(), test.y[::2].numpy())
    assert readout.score(feats[1::2].numpy(), test.y[1::2].numpy()) > 0.8
    # Other params train another network.
    resolve_feature_space(first, FeatureParams(cnn_epochs=3), "fid")
    assert calls == [2, 3]


def test_trained_cnn_rejects_tabular_data():
    train, _ = real_split("breast-cancer")
    with pytest.raises(ConfigError, match="trained-cnn.*needs image data"):
        resolve_feature_space(EvalContext.from_seed(0, train), FeatureParams(feature_space="trained-cnn"), "prdc")


# ------------------------------------------------------------------------------ inception
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_inception_without_weights_is_a_clear_error(tmp_path):
    train, _ = real_split("digits", train_share=0.1)
    ectx = EvalContext.from_seed(0, train)
    with pytest.raises(ConfigError, match="fid.params.inception_weights.*downloads nothing"):
        resolve_feature_space(ectx, FeatureParams(feature_space="inception"), "fid")
    # a file that is not the weights: validate names it (check_params), a run that meets it is exit 3
    missing = tmp_path / "nope.pth"
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    unsafe = tmp_path / "unsafe.pth"  # a pickle that would run code is refused by weights_only loading
    with unsafe.open("wb") as handle:
        pickle.dump(Cache(), handle)
    for path, reason in [(missing, "is not a file"), (wrong, "not the FID InceptionV3 state dict"),
                         (unsafe, r"only tensors and plain values are loaded \(torch.load with weights_only=True")]:
        params = FeatureParams(feature_space="inception", inception_weights=str(path))
        with pytest.raises(DataError, match="fid: inception_weights: .*" + reason):
            resolve_feature_space(ectx, params, "fid")
        [(place, message)] = features.feature_params_problems(FID, params, "image")
        assert place == "inception_weights" and re.search(reason, message) and "weights_only=False" not in message


@pytest.mark.slow
def test_inception_features_from_a_user_given_weights_file(tmp_path, monkeypatch):
    torch.manual_seed(0)  # only for the stand-in weights of this test, not for setforge code
    model = features.build_fid_inception().eval()
    weights = tmp_path / "pt_inception.pth"
    # As in older files, without BatchNorm's num_batches_tracked counters.
    torch.save({k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}, weights)
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(k.get("weights_only")) or real_load(*a, **k))
    train, _ = real_split("digits", train_share=0.1)
    ectx = EvalContext.from_seed(0, train)
    space = resolve_feature_space(ectx, FeatureParams(feature_space="inception", inception_weights=str(weights)), "fid")
    assert loads == [True]
    out = space.embed(train.x[:1])
    assert out.shape == (1, 2048)
    with torch.no_grad():
        expected = features.fid_inception_features(model, train.x[:1])
    torch.testing.assert_close(out, expected)


def test_a_missing_inception_weights_file_is_refused_before_any_work(tmp_path, capsys):
    from setforge.tools.cli import main

    run_file = tmp_path / "run.yaml"
    run_file.write_text("source: sklearn-digits\n"
                        "evaluate: [{name: fid, params: {feature_space: inception, inception_weights: w/pt.pth}}]\n"
                        f"output: {{dir: {tmp_path / 'out'}}}\n")
    assert main(["run", str(run_file)]) == 2
    err = capsys.readouterr().err
    assert "evaluate[0].params.inception_weights" in err and str(tmp_path / "w" / "pt.pth") in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
