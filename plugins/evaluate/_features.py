"""Offline feature spaces shared by the distribution metrics (FID, KID, PRDC, memorisation).

A metric compares real and new rows in a feature space, never on a network or a download:

- ``trained-cnn`` (default for images): the shared small CNN of `classifiers`, trained on the
  real rows of the raw training split; a row's features are its penultimate layer. The trained
  network and the real rows' features are kept in ``EvalContext.cache``, keyed by the training
  split's fingerprint and the training params, so every metric of a run shares one network.
- ``raw`` (default for tabular data): rows flattened and standardised with the mean and standard
  deviation of the real rows of the raw training split (constant columns keep scale 1).
- ``inception``: the standard FID InceptionV3 pool features (2048-d, pytorch-fid's network),
  from a weights file the user gives by path (``inception_weights``), read with
  ``torch.load(weights_only=True)``; nothing is downloaded. pytorch-fid's
  ``pt_inception-2015-12-05-6726825d.pth`` is such a file.

`FeatureParams` holds the params every metric shares; `resolve_feature_space` turns them into a
`FeatureSpace` whose `embed` maps rows to ``(N, F)`` float32 features on the evaluator's device.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field

from setforge.components import Evaluator, ExistingPath, read_weights
from setforge.dataset import Dataset, Origin
from setforge.errors import ConfigError, DataError
from .._shared.columns import column_stats

if TYPE_CHECKING:
    from setforge.context import EvalContext

__all__ = ["FeatureParams", "FeatureSpace", "feature_params_problems", "resolve_feature_space", "raw_space", "real_rows", "embed_rows",
           "build_fid_inception", "FEATURE_SPACES"]

FEATURE_SPACES = ("auto", "trained-cnn", "raw", "inception")


class FeatureParams(Evaluator.Params):
    """Params shared by the distribution metrics: the feature space and the row minimum."""

    feature_space: Literal["auto", "trained-cnn", "raw", "inception"] = Field(
        "auto", description="where rows are compared: 'auto' (trained-cnn for images, raw otherwise), 'trained-cnn' "
                            "(penultimate layer of a small CNN trained on the real training rows), 'raw' (flattened, "
                            "standardised with the training split's statistics), 'inception' (FID InceptionV3 pool "
                            "features from inception_weights)")
    inception_weights: ExistingPath | None = Field(
        None, description="path to the FID InceptionV3 weights (pytorch-fid's pt_inception-2015-12-05-6726825d.pth), "
                          "needed by feature_space: inception; nothing is downloaded")
    cnn_epochs: int = Field(100, ge=1, le=1000, description="most training epochs of the trained-cnn feature network "
                                                                 "(it stops early on the val split when there is one)")
    min_rows: int = Field(20, ge=2, description="fewest real and fewest new rows the standard estimator is used "
                                                "from; smaller groups get the small-sample one")
    per_class: bool = Field(True, description="also report each class")
    match_classes: bool = Field(True, description="overall numbers compare the new rows with real rows in the same "
                                                  "class proportions (class-weighted); false: with every real row")
    small_sample: bool = Field(True, description="a group with fewer than min_rows rows on a side gets a "
                                                 "small-sample estimate with a bootstrap interval; false: skipped")
    bootstrap: int = Field(200, ge=10, le=10_000, description="bootstrap rounds behind a small-sample interval")
    batch_size: int = Field(512, ge=1, description="rows per batch when computing network features")


@dataclass
class FeatureSpace:
    """A resolved feature space: `embed(x)` -> ``(N, F)`` float32 features on the evaluator's device.

    ``key`` identifies the space's content (network weights, statistics), so features computed
    once can be cached by ``(key, data fingerprint)``.
    """

    name: str
    key: str
    embed_batch: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device
    batch_size: int = 512
    cacheable: bool = False

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features of every row of `x`, computed batch by batch without gradients."""
        outs = []
        with torch.no_grad():
            for start in range(0, x.shape[0], self.batch_size):
                batch = x[start:start + self.batch_size].to(self.device)
                outs.append(self.embed_batch(batch).reshape(batch.shape[0], -1).to(torch.float32))
        if not outs:
            return torch.zeros((0, 0), dtype=torch.float32, device=self.device)
        return torch.cat(outs)


def real_rows(ds: Dataset) -> Dataset:
    """The real rows of a dataset."""
    return ds[ds.origin == int(Origin.REAL)]


def embed_rows(ectx: "EvalContext", space: FeatureSpace, ds: Dataset) -> torch.Tensor:
    """Features of `ds` in `space`; network features are cached by (space, data fingerprint)."""
    if not space.cacheable:
        return space.embed(ds.x)
    from setforge.context import Cache

    key = Cache.key("setforge-features", space.key, ds.fingerprint())
    return ectx.cache.get_or_compute(key, lambda: space.embed(ds.x).cpu()).to(space.device)


def feature_params_problems(cls: type, params: FeatureParams, modality: str | None) -> list[tuple[str, str]]:
    """``check_params`` of the evaluators with `FeatureParams`: a feature space that cannot work,
    found at ``validate`` (inception without weights, a network feature space on non-image data)."""
    problems = []
    name = params.feature_space
    if name == "inception" and not params.inception_weights:
        problems.append(("feature_space", "'inception' needs inception_weights, the path of the FID InceptionV3 "
                                          "weights (pytorch-fid's pt_inception-2015-12-05-6726825d.pth); setforge "
                                          "downloads nothing. Give inception_weights, or use 'trained-cnn' or 'raw'"))
    elif name == "inception":
        _, problem = inception_state(Path(params.inception_weights).expanduser(), f"{cls.name}: inception_weights")
        if problem:
            problems.append(("inception_weights", problem))
    if name in ("inception", "trained-cnn") and modality is not None and modality != "image":
        problems.append(("feature_space", f"{name!r} needs image data, and the source gives {modality} data; "
                                          f"use 'raw' (or 'auto')"))
    return problems


def resolve_feature_space(ectx: "EvalContext", params: FeatureParams, evaluator: str) -> FeatureSpace:
    """The feature space `params` ask for, built (or taken from the cache) for this run."""
    train = ectx.raw_train
    name = params.feature_space
    if name == "auto":
        name = "trained-cnn" if train.modality == "image" else "raw"
    device = torch.device(ectx.device)
    if name == "raw":
        return raw_space(train, device, params.batch_size)
    if name == "trained-cnn":
        if train.modality != "image":
            raise ConfigError(problems=[(f"{evaluator}.params.feature_space",
                                         f"'trained-cnn' needs image data, this run's data is {train.modality}; "
                                         f"use 'raw' (or 'auto')")])
        return _trained_cnn_space(ectx, params, device, evaluator)
    if name == "inception":
        if train.modality != "image":
            raise ConfigError(problems=[(f"{evaluator}.params.feature_space",
                                         f"'inception' needs image data, this run's data is {train.modality}")])
        return _inception_space(params, device, evaluator)
    raise ConfigError(problems=[(f"{evaluator}.params.feature_space", f"unknown feature space {name!r}; "
                                                                      f"choose one of {list(FEATURE_SPACES)}")])


# ------------------------------------------------------------------------------------ raw
def raw_space(train: Dataset, device: torch.device, batch_size: int) -> FeatureSpace:
    real = real_rows(train)
    if len(real) < 2:
        raise DataError(f"the raw feature space standardises with the real training rows; there are {len(real)}")
    mean, std = column_stats(real.x.reshape(len(real), -1).to(device))
    mean32, std32 = mean.to(torch.float32), std.to(torch.float32)

    def embed_batch(x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(x.shape[0], -1) - mean32) / std32

    key = hashlib.sha256(mean.cpu().numpy().tobytes() + std.cpu().numpy().tobytes()).hexdigest()[:32]
    return FeatureSpace("raw", f"raw-{key}", embed_batch, device, batch_size, cacheable=False)


# ---------------------------------------------------------------------------- trained-cnn
def _trained_cnn_space(ectx: "EvalContext", params: FeatureParams, device: torch.device,
                       evaluator: str) -> FeatureSpace:
    from setforge.context import Cache

    from .._shared import classifiers

    train = real_rows(ectx.raw_train)
    if len(train) < 2 or len(set(train.y.tolist())) < 2:
        raise DataError(f"{evaluator}: the trained-cnn feature space trains a classifier on the real training rows; "
                        f"it needs at least two classes, got {len(train)} rows of "
                        f"{len(set(train.y.tolist()))} class(es) (use feature_space: raw)")
    # The real val split (never trained on) stops training early when there is one.
    val = ectx.val if ectx.val is not None and len(ectx.val) else None
    seed = _seed_of(ectx)
    key = Cache.key("setforge-trained-cnn", train.fingerprint(), None if val is None else val.fingerprint(),
                    params.cnn_epochs, seed)

    def fit() -> Any:
        model = classifiers.train_classifier("cnn", train, val, seed, device, epochs=params.cnn_epochs)
        return model.cpu()

    model = ectx.cache.get_or_compute(key, fit).to(device).eval()

    def embed_batch(x: torch.Tensor) -> torch.Tensor:
        return model.features(x)

    return FeatureSpace("trained-cnn", f"trained-cnn-{key}", embed_batch, device, params.batch_size, cacheable=True)


def _seed_of(ectx: "EvalContext") -> int:
    # The feature network must not depend on which evaluator asks for it, so it is seeded from
    # the run seed alone (a fixed key), not from the evaluator's own stream.
    from setforge.rng import Rng

    return Rng(ectx.rng.seed, ("trained-cnn-features",)).sk_seed()


# ------------------------------------------------------------------------------ inception
def inception_state(path: Path, what: str) -> tuple[dict[str, torch.Tensor], str | None]:
    """The FID InceptionV3 state dict in the file `path`, and what is wrong with it (None: nothing);
    ``validate`` reads it too, so a wrong file is reported before any work."""
    if not path.is_file():
        return {}, f"{str(path)!r} is not a file (expected pytorch-fid's pt_inception-2015-12-05-6726825d.pth)"
    try:
        state = read_weights(path, what)
    except DataError as error:
        return {}, str(error).removeprefix(f"{what}: ")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        return {}, f"{str(path)!r} holds a {type(state).__name__}, not a state dict"
    with torch.device("meta"):
        model = build_fid_inception()
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    optional = ("num_batches_tracked",)  # absent from older files; BatchNorm fills it in
    missing = sorted(k for k in expected if k not in state and not k.endswith(optional))
    unexpected = sorted(k for k in state if k not in expected and not k.startswith("fc."))
    wrong = sorted(k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        detail = "; ".join(f"{label} {keys[:3]}{' ...' if len(keys) > 3 else ''}" for label, keys in
                           (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys)
        return {}, f"{str(path)!r} is not the FID InceptionV3 state dict of pytorch-fid ({detail})"
    return state, None


def _inception_space(params: FeatureParams, device: torch.device, evaluator: str) -> FeatureSpace:
    place = f"{evaluator}.params.inception_weights"
    if not params.inception_weights:
        raise ConfigError(problems=[(place, "feature_space 'inception' needs the path of the FID InceptionV3 weights "
                                            "(pytorch-fid's pt_inception-2015-12-05-6726825d.pth); setforge downloads "
                                            "nothing. Give inception_weights, or use feature_space 'trained-cnn' or "
                                            "'raw'")])
    path = Path(params.inception_weights).expanduser()
    state, problem = inception_state(path, f"{evaluator}: inception_weights")
    if problem:
        raise DataError(f"{evaluator}: inception_weights: {problem}")
    # Built on the meta device (no memory, no initialisation), then the file's tensors are assigned.
    with torch.device("meta"):
        model = build_fid_inception()
    model.fc = torch.nn.Identity()  # the 1008-class head is not part of the pool features
    expected = model.state_dict()
    weights = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items() if k in expected}
    model.load_state_dict(weights, strict=False, assign=True)
    leftover = [name for name, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    for name in leftover:  # only num_batches_tracked can be left: a step counter, unused in eval
        module = model.get_submodule(name.rsplit(".", 1)[0])
        setattr(module, name.rsplit(".", 1)[1], torch.tensor(0, dtype=torch.long))
    model = model.to(device).eval()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)

    def embed_batch(x: torch.Tensor) -> torch.Tensor:
        return fid_inception_features(model, x)

    return FeatureSpace("inception", f"inception-{digest.hexdigest()[:32]}", embed_batch, device,
                        min(params.batch_size, 64), cacheable=True)


def fid_inception_features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """pytorch-fid's pool3 features: images in [0, 1] (1 or 3 channels) resized to 299x299
    bilinearly, scaled to [-1, 1], through the network up to the global average pool."""
    import torch.nn.functional as F

    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != 3:
        raise DataError(f"the inception feature space needs images with 1 or 3 channels, got {x.shape[1]}")
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    x = 2 * x - 1
    m = model
    x = m.Conv2d_1a_3x3(x)
    x = m.Conv2d_2a_3x3(x)
    x = m.Conv2d_2b_3x3(x)
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    x = m.Conv2d_3b_1x1(x)
    x = m.Conv2d_4a_3x3(x)
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    for block in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                  "Mixed_7a", "Mixed_7b", "Mixed_7c"):
        x = getattr(m, block)(x)
    return F.adaptive_avg_pool2d(x, 1).flatten(1)


def build_fid_inception() -> torch.nn.Module:
    """The FID InceptionV3 (pytorch-fid's ``fid_inception_v3``) with untrained weights.

    torchvision's Inception3 with 1008 classes and the blocks of the 2015 TensorFlow graph: average
    pools that do not count padding, and a max pool in the last block. Load the weights into it.
    """
    import torch.nn.functional as F
    from torchvision.models import inception as tv

    class FIDInceptionA(tv.InceptionA):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            branch1x1 = self.branch1x1(x)
            branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
            branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False))
            return torch.cat([branch1x1, branch5x5, branch3x3dbl, branch_pool], 1)

    class FIDInceptionC(tv.InceptionC):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            branch1x1 = self.branch1x1(x)
            branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            branch7x7dbl = x
            for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                          self.branch7x7dbl_5):
                branch7x7dbl = layer(branch7x7dbl)
            branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False))
            return torch.cat([branch1x1, branch7x7, branch7x7dbl, branch_pool], 1)

    class FIDInceptionE(tv.InceptionE):
        def __init__(self, in_channels: int, max_pool: bool):
            super().__init__(in_channels)
            self.max_pool = max_pool

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            branch1x1 = self.branch1x1(x)
            branch3x3 = self.branch3x3_1(x)
            branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
            branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
            if self.max_pool:
                # The last block of the TensorFlow graph max-pools here (a known quirk FID keeps).
                pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
            else:
                pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
            branch_pool = self.branch_pool(pooled)
            return torch.cat([branch1x1, branch3x3, branch3x3dbl, branch_pool], 1)

    model = tv.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    model.Mixed_5b = FIDInceptionA(192, pool_features=32)
    model.Mixed_5c = FIDInceptionA(256, pool_features=64)
    model.Mixed_5d = FIDInceptionA(288, pool_features=64)
    model.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    model.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    model.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    model.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    model.Mixed_7b = FIDInceptionE(1280, max_pool=False)
    model.Mixed_7c = FIDInceptionE(2048, max_pool=True)
    return model
