"""The conformance kit every component runs, built-in or third-party.

    from setforge.testing import check_component
    check_component(MyAugmenter)                  # raises ConformanceError naming what is wrong

or, for every component of an installed registry, as a pytest parametrisation::

    @setforge.testing.parametrize_components()
    def test_conformance(component_info):
        check_component(component_info.cls)

What it checks: the name is kebab-case and the kind valid; a docstring is present; ``Params``
forbids extra keys, builds with defaults only and round-trips through JSON; on small real data
(scikit-learn's digits and wine) a fixed `Rng` gives identical output twice; shapes, dtypes, the
device and the [0, 1] image range are kept; an augmenter gives a batch of no rows back, leaves the
caller's batch as it was (every row gated on too), and one whose rows are independent gives the same rows in a chain cut into chunks on worker threads;
provenance is kept (real rows stay real, new rows carry their origin, step and parent); data of a
modality the component does not accept gets a `DataError` naming the component. Components may
declare cheap ``testing_params`` (few epochs, small models) that the kit uses instead of the
defaults; a component that reads files (a source) may define ``make_testing_params(folder) -> dict``
(a classmethod) that writes a small fixture into `folder` and returns the params to read it; a
component that needs categorical tabular data sets ``testing_data = {"categorical": "some"}`` (or
``"all"``, see `sample_dataset`), one that needs colour images sets
``testing_data = {"channels": 3}`` (RGB digits), and one that the kit's small samples cannot
exercise for a modality it accepts names the others in ``testing_modalities``. A component that
accepts neither image nor tabular data is exercised on the kit's audio (synthesised tones) or text
samples. A generator that can be saved (it defines ``_state_dict``) must give the same rows after
``save`` and ``load`` into a fresh instance.

Limits: the kit checks the contract, not quality; its samples are tiny (36 rows, 8x8 images),
so size-dependent code paths (large images, many classes, long training) need the component's
own tests; text components are checked for determinism and provenance only.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from .components import BASE_FOR_KIND, NAME_PATTERN, Augmenter, Component, Generator
from .context import EvalContext, Metrics, StepContext
from .dataset import Dataset, FeatureInfo, Origin, Splits
from .errors import ConfigError, ConformanceError, DataError
from .hookspecs import KINDS

__all__ = ["check_component", "sample_dataset", "parametrize_components"]

_SAMPLE_MODALITIES = ("image", "tabular")
#: Sample data for components that accept neither image nor tabular data.
_OTHER_MODALITIES = ("audio", "text")
#: `testing_data` keys by the modality whose sample data they shape.
_TESTING_DATA_KEYS = {"tabular": ("categorical",), "image": ("channels",)}
_TEXTS = (
    ("sport", "the team won the match in the final minute"), ("sport", "a late goal decided the cup final"),
    ("sport", "the runner broke the national record today"), ("sport", "fans cheered as the striker scored twice"),
    ("sport", "the coach praised the defence after the game"), ("sport", "she served an ace to win the set"),
    ("food", "the soup was hot and full of fresh herbs"), ("food", "bake the bread until the crust is golden"),
    ("food", "this cafe serves the best apple pie in town"), ("food", "add a pinch of salt to the sauce"),
    ("weather", "heavy rain is expected over the hills tonight"),
    ("weather", "a cold wind and snow will reach the coast"),
)


def sample_dataset(modality: str = "image", device: Any = "cpu", categorical: str = "none",
                   channels: int = 1) -> Dataset:
    """Small, real, imbalanced data for the kit and for plugin tests.

    ``image``: 36 of scikit-learn's 8x8 digits (classes 0, 1, 2 with 18, 12 and 6 rows),
    ``(N, 1, 8, 8)`` in [0, 1]. ``tabular``: 36 rows of scikit-learn's wine data (13 numeric
    columns, classes with 18, 12 and 6 rows), with a `FeatureInfo`. ``text``: a few strings (to
    check that components reject a modality they do not accept).

    ``categorical`` (tabular only): ``"some"`` turns the first three wine columns into categorical
    columns (tertiles of the column, codes 0-2 with categories ``low``, ``mid``, ``high``),
    ``"all"`` every column — for components that need categorical data (SMOTE-NC, SMOTE-N).
    ``channels`` (image only): 3 gives RGB digits (the channels are ``v``, ``v**2`` and ``1 - v``
    of the grey value ``v``, so they differ) for components that need colour.

    ``audio``: 36 mono clips of 1024 samples at 8 kHz (classes ``low``, ``high``, ``chirp``: a
    440 Hz tone, an 1100 Hz tone and a 200-2000 Hz chirp, amplitudes 0.2-0.8, 18/12/6 rows).
    ``text``: 12 short sentences (classes ``sport``, ``food``, ``weather`` with 6, 4 and 2 rows).
    """
    from sklearn.datasets import load_digits, load_wine

    per_class = (18, 12, 6)
    if modality == "text":
        classes = ("sport", "food", "weather")
        return Dataset(x=[t for _, t in _TEXTS], y=torch.tensor([classes.index(c) for c, _ in _TEXTS]),
                       classes=classes, modality="text")
    if modality == "audio":
        return _sample_audio(per_class).to(device)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if modality == "image":
        bunch = load_digits()
        data, target = bunch.data / 16.0, bunch.target
        classes = ("0", "1", "2")
    elif modality == "tabular":
        bunch = load_wine()
        data, target = bunch.data, bunch.target
        classes = tuple(str(c) for c in bunch.target_names)
    else:
        raise ValueError(f"sample_dataset has image, tabular and text data, not {modality!r}")
    rows = [i for c, count in enumerate(per_class) for i in [j for j, t in enumerate(target) if t == c][:count]]
    x = torch.tensor(data[rows], dtype=torch.float32)
    y = torch.tensor(target[rows], dtype=torch.int64)
    if modality == "image":
        x = x.view(-1, 1, 8, 8).clamp(0, 1)
        if channels == 3:
            x = torch.cat([x, x**2, 1 - x], dim=1)
        return Dataset(x=x, y=y, classes=classes, modality="image").to(device)
    names = tuple(bunch.feature_names)
    if categorical not in ("none", "some", "all"):
        raise ValueError(f"categorical must be 'none', 'some' or 'all', got {categorical!r}")
    binned = {"none": 0, "some": 3, "all": len(names)}[categorical]
    if binned:
        cuts = torch.quantile(x[:, :binned], torch.tensor([1 / 3, 2 / 3]), dim=0)  # (2, binned)
        x[:, :binned] = (x[:, :binned].unsqueeze(1) > cuts.unsqueeze(0)).sum(1).to(torch.float32)
    features = FeatureInfo(names=names, categorical={n: ("low", "mid", "high") for n in names[:binned]},
                           dtypes={n: ("str" if i < binned else "float64") for i, n in enumerate(names)})
    return Dataset(x=x, y=y, classes=classes, modality="tabular", features=features).to(device)


def _sample_audio(per_class: tuple[int, ...]) -> Dataset:
    """Tones and chirps with amplitudes and phases from a fixed seed (no global RNG)."""
    rate, length = 8000, 1024
    t = torch.arange(length, dtype=torch.float64) / rate
    generator = torch.Generator().manual_seed(0)
    rows, labels = [], []
    for c, count in enumerate(per_class):
        amplitude = 0.2 + 0.6 * torch.rand(count, 1, generator=generator, dtype=torch.float64)
        phase = 2 * torch.pi * torch.rand(count, 1, generator=generator, dtype=torch.float64)
        if c < 2:
            angle = 2 * torch.pi * (440.0, 1100.0)[c] * t
        else:  # a linear chirp from 200 to 2000 Hz over the clip
            angle = 2 * torch.pi * (200.0 * t + 0.5 * (1800.0 / t[-1]) * t**2)
        rows.append(amplitude * torch.sin(angle + phase))
        labels += [c] * count
    x = torch.cat(rows).to(torch.float32).unsqueeze(1)
    return Dataset(x=x, y=torch.tensor(labels), classes=("low", "high", "chirp"), modality="audio")


def _same(a: Dataset, b: Dataset) -> bool:
    return a.fingerprint() == b.fingerprint()


class _Report:
    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.failures: list[str] = []

    def check(self, condition: bool, message: str) -> bool:
        if not condition:
            self.failures.append(message)
        return condition

    def run(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as error:  # noqa: BLE001 - every failure is reported, not raised
            self.failures.append(f"{what} raised {type(error).__name__}: {error}")
            return None


def check_component(cls: type, params: Mapping[str, Any] | None = None, *, device: Any = "cpu", seed: int = 0,
                    modalities: tuple[str, ...] | None = None) -> None:
    """Check `cls` against the component contract; raise `ConformanceError` listing every failure.

    `params` default to the class's ``testing_params``. `modalities` limits the data checks (by
    default: each of image and tabular that the component accepts). Everything the component
    writes (checkpoints, fixtures) goes to a temporary folder that is removed afterwards.
    """
    global _KIT_DIR
    with tempfile.TemporaryDirectory(prefix="setforge-kit-") as folder:
        _KIT_DIR = Path(folder)
        try:
            _check_component(cls, params, device=device, seed=seed, modalities=modalities)
        finally:
            _KIT_DIR = None


def _check_component(cls: type, params: Mapping[str, Any] | None, *, device: Any, seed: int,
                     modalities: tuple[str, ...] | None) -> None:
    report = _Report(cls)
    label = f"{getattr(cls, 'kind', '?')} '{getattr(cls, 'name', cls)}'"
    if not report.check(isinstance(cls, type) and issubclass(cls, Component), f"{cls!r} is not a setforge component"):
        raise ConformanceError(f"{label}: " + "; ".join(report.failures))
    report.check(cls.kind in KINDS, f"kind {cls.kind!r} is not one of {list(KINDS)}")
    if cls.kind in BASE_FOR_KIND:
        report.check(issubclass(cls, BASE_FOR_KIND[cls.kind]), f"is not a subclass of {BASE_FOR_KIND[cls.kind].__name__}")
    report.check(isinstance(cls.name, str) and bool(NAME_PATTERN.match(cls.name)), f"name {cls.name!r} is not kebab-case")
    report.check(bool(cls.summary()), "has no docstring (its first line is what `setforge plugins list` shows)")
    report.check(bool(cls.modalities) and all(m in ("image", "tabular", "audio", "text") for m in cls.modalities),
                 f"modalities {cls.modalities!r} must be a non-empty subset of image, tabular, audio, text")
    report.check(cls.Params.model_config.get("extra") == "forbid", "Params must forbid extra keys (extra='forbid')")
    defaults = report.run("Params() with defaults only", cls.Params)
    if params is None and hasattr(cls, "make_testing_params"):
        # Components that read files write their own small fixture (a source's data file).
        fixture = _KIT_DIR / "fixture"
        fixture.mkdir()
        params = cls.make_testing_params(fixture)
    chosen = dict(cls.testing_params if params is None else params)
    parsed = report.run("Params(**params)", lambda: cls.parse_params(chosen))
    if parsed is not None:
        again = report.run("Params JSON round trip", lambda: cls.Params.model_validate_json(parsed.model_dump_json()))
        report.check(again == parsed, "Params do not round-trip through JSON unchanged")
        report.check(json.loads(parsed.model_dump_json()) is not None, "Params must serialise to JSON")
    del defaults
    bad = report.run("a wrong param type", lambda: _rejects_unknown_param(cls))
    report.check(bad is True, "an unknown param key must raise ConfigError naming it")
    if parsed is not None and not report.failures:
        behaviour = _BEHAVIOUR.get(cls.kind)
        if behaviour is not None:
            wanted = modalities or tuple(m for m in getattr(cls, "testing_modalities", _SAMPLE_MODALITIES)
                                         if m in cls.modalities)
            wanted = wanted or tuple(m for m in _OTHER_MODALITIES if m in cls.modalities)
            if cls.kind == "source":
                wanted = wanted[:1] or ("any",)
            for modality in wanted:
                report.run(f"{modality} data", lambda m=modality: behaviour(report, cls, chosen, m, device, seed))
            if cls.kind != "source":
                other = "text" if "text" not in cls.modalities else next(
                    (m for m in ("image", "tabular", "audio") if m not in cls.modalities), None)
                if other is not None:
                    report.run(f"{other} data", lambda: _rejects_modality(report, cls, chosen, device, seed, other))
    if report.failures:
        raise ConformanceError(f"{label} breaks the component contract:\n  - " + "\n  - ".join(report.failures))


def _rejects_unknown_param(cls: type) -> bool:
    try:
        cls.parse_params({"surely_not_a_param": 1})
    except ConfigError as error:
        return "surely_not_a_param" in str(error)
    return False


_KIT_DIR: Path | None = None


def _testing_data(cls: type, modality: str) -> dict[str, Any]:
    """The component's wishes for the kit's sample data of `modality` (``testing_data``)."""
    wishes = dict(getattr(cls, "testing_data", {}))
    return {k: v for k, v in wishes.items() if k in _TESTING_DATA_KEYS.get(modality, ())}


def _ctx(seed: int, device: Any, step: int = 0) -> StepContext:
    """A fresh context; its workdir is a new folder inside the kit's temporary folder."""
    workdir = None
    if _KIT_DIR is not None:
        workdir = _KIT_DIR / f"call-{sum(1 for _ in _KIT_DIR.glob('call-*'))}"
    return StepContext.from_seed(seed, device=device, step=step, batch_size=16, workdir=workdir)


def _rejects_modality(report: _Report, cls: type, params: Mapping[str, Any], device: Any, seed: int,
                      modality: str = "text") -> None:
    ds = sample_dataset(modality, device)
    instance = cls(params)
    calls = {
        "preprocess": lambda: instance.fit(ds, _ctx(seed, device)),
        "augment": lambda: instance.augment(ds, _ctx(seed, device)),
        "resample": lambda: instance.resample(ds, _ctx(seed, device)),
        "generate": lambda: instance.fit(ds, _ctx(seed, device)),
        "evaluate": lambda: instance.evaluate(EvalContext.from_seed(seed, ds, device=device)),
    }
    try:
        calls[cls.kind]()
    except DataError as error:
        report.check(cls.name in str(error),
                     f"the DataError for unsupported {modality} data must name '{cls.name}': {error}")
        return
    report.failures.append(f"{modality} data (not in its modalities) must raise DataError naming the component")


def _check_rows(report: _Report, out: Any, ds: Dataset, device: Any, what: str, keep_shape: bool = True) -> bool:
    if not report.check(isinstance(out, Dataset), f"{what} returned {type(out).__name__}, not a Dataset"):
        return False
    report.check(out.modality == ds.modality and out.classes == ds.classes, f"{what} changed modality or classes")
    if ds.modality == "text":  # a list of str, on the CPU
        return report.check(isinstance(out.x, list), f"{what} returned text x of type {type(out.x).__name__}")
    report.check(out.x.dtype == torch.float32, f"{what} returned x of dtype {out.x.dtype}")
    report.check(out.device == torch.device(device) and out.x.device == torch.device(device),
                 f"{what} moved data to {out.x.device}, expected {device}")
    if keep_shape and ds.modality == "image":
        report.check(out.shape == ds.shape, f"{what} changed the image shape {ds.shape} -> {out.shape}")
    return True


def _augment(report: _Report, cls: type, params: Mapping[str, Any], modality: str, device: Any, seed: int) -> None:
    ds = sample_dataset(modality, device, **_testing_data(cls, modality))
    first = cls(params).augment(ds, _ctx(seed, device, step=1), copies=2)
    second = cls(params).augment(ds, _ctx(seed, device, step=1), copies=2)
    if not _check_rows(report, first, ds, device, "augment()"):
        return
    report.check(_same(first, second), "the same seed gave different augmented rows")
    report.check(len(first) == 3 * len(ds), f"copies=2 on {len(ds)} rows gave {len(first)} rows, expected {3 * len(ds)}")
    report.check(_same(first[: len(ds)], ds), "the original rows must stay unchanged and first")
    new = first[len(ds):]
    report.check(bool((new.origin == int(Origin.AUGMENTED)).all()), "new rows must be Origin.AUGMENTED")
    report.check(bool((new.step == 1).all()), "new rows must carry the step position")
    report.check(bool(((new.parent >= 0) & (new.parent < len(ds))).all()), "new rows must name their real parent")
    report.check(bool((new.y == ds.y[new.parent]).all()), "augmented rows must keep their parent's label")
    module: Augmenter = cls(params)
    generator = torch.Generator(device=device).manual_seed(seed)
    empty = report.run("forward on a batch of no rows", lambda: module(ds.x[:0], ds.y[:0], generator=generator))
    report.check(empty is None or len(empty) == 0, "a batch of no rows must come back with no rows")
    batch = list(ds.x) if ds.modality == "text" else ds.x.clone()
    out = module(ds.x, ds.y, generator=generator)
    replay = module(ds.x, ds.y, params=module.last_params)
    gate = module.last_params.get("apply")
    if isinstance(gate, torch.Tensor):  # (every row on: the op's own path sees the caller's batch itself)
        module(ds.x, ds.y, params={**module.last_params, "apply": torch.ones_like(gate)})
    same = ds.x == batch if ds.modality == "text" else torch.equal(ds.x, batch)
    report.check(same, "forward(x) must not write into the caller's batch x")
    if ds.modality == "text":
        report.check(isinstance(out, list) and len(out) == len(ds.x) and all(isinstance(s, str) for s in out),
                     "forward(texts) must return one str per row")
        report.check(out == replay, "forward(texts, params=last_params) must replay the same output")
        return
    report.check(isinstance(out, torch.Tensor) and out.shape == ds.x.shape, "forward(x) must keep the batch shape")
    report.check(torch.equal(out, replay), "forward(x, params=last_params) must replay the same output")
    if module.rows_independent and isinstance(out, torch.Tensor) and ds.x.device.type == "cpu":
        report.check(_same_in_chunks(module, ds.x, ds.y, generator),
                     "in a chain cut into chunks, the rows must match the whole batch's: with rows_independent "
                     "(the default) no row may depend on other rows, and the chunks may run on several threads "
                     "at once (no shared mutable state, no torch global RNG)")


class _Keep(Augmenter):
    """Rows as they are: a chain of an op and this one has two runs, so it is cut into chunks."""

    name = "keep"
    modalities = ("image", "tabular", "audio")

    def _transform(self, x, y, params):
        return x.clone()


def _same_in_chunks(module: Augmenter, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> bool:
    from .chain import Chain

    chain = Chain([module, _Keep()])
    params = chain.make_params(x, y, generator)
    whole = chain(x, y, params=params)
    chain.chunk_bytes = 3 * x[0].numel() * x.element_size()  # (an instance's value: three rows a chunk)
    before = torch.get_num_threads()
    torch.set_num_threads(max(2, before))
    try:
        # (to float rounding: torch's vectorised and scalar kernels, of pow for one, may round a
        # value differently in batches of other sizes)
        return all(torch.allclose(chain(x, y, params=params), whole, rtol=1e-5, atol=1e-6) for _ in range(3))
    finally:
        torch.set_num_threads(before)


def _resample(report: _Report, cls: type, params: Mapping[str, Any], modality: str, device: Any, seed: int) -> None:
    ds = sample_dataset(modality, device, **_testing_data(cls, modality))
    first = cls(params).resample(ds, _ctx(seed, device, step=1))
    second = cls(params).resample(ds, _ctx(seed, device, step=1))
    if not _check_rows(report, first, ds, device, "resample()"):
        return
    report.check(_same(first, second), "the same seed gave different resampled rows")
    real = first.origin == int(Origin.REAL)
    report.check(bool((first.row_id[real] >= 0).all()), "kept real rows must keep their row ids")
    new = first[~real]
    report.check(bool((new.origin == int(Origin.RESAMPLED)).all()), "new rows must be Origin.RESAMPLED")
    report.check(bool((new.step == 1).all()), "new rows must carry the step position")
    report.check(bool((new.parent < len(ds)).all()), "parents must index the input's real rows")


def _generate(report: _Report, cls: type, params: Mapping[str, Any], modality: str, device: Any, seed: int) -> None:
    ds = sample_dataset(modality, device, **_testing_data(cls, modality))
    labels = torch.tensor([0, 1, 2, 2, 2, 1], device=device)
    outs = []
    for _ in range(2):
        generator = cls(params)
        generator.fit(ds, _ctx(seed, device, step=2))
        outs.append(generator.sample(labels, _ctx(seed + 1, device, step=2)))
    first, second = outs
    if not _check_rows(report, first, ds, device, "sample()"):
        return
    report.check(_same(first, second), "the same seed gave different generated rows")
    report.check(torch.equal(first.y, labels), "sample(labels) must return rows with exactly those labels")
    report.check(bool((first.origin == int(Origin.GENERATED)).all()), "generated rows must be Origin.GENERATED")
    report.check(bool((first.parent == -1).all()), "generated rows have no parent (-1)")
    if getattr(cls, "_state_dict") is not Generator._state_dict:
        report.run("save() and load()", lambda: _round_trip(report, cls, params, generator, labels, second, device,
                                                            seed))


def _round_trip(report: _Report, cls: type, params: Mapping[str, Any], fitted: Generator, labels: torch.Tensor,
                sampled: Dataset, device: Any, seed: int) -> None:
    """A generator saved and loaded into a fresh instance samples the same rows."""
    path = fitted.save((_KIT_DIR or Path(tempfile.mkdtemp())) / "generator.pt")
    fresh = cls(params).load(path, map_location=device)
    again = fresh.sample(labels, _ctx(seed + 1, device, step=2))
    same = torch.equal(again.x, sampled.x) and torch.equal(again.y, sampled.y)
    report.check(same, "a generator loaded from save() must sample the same rows as the one "
                                        "saved (does _load_state_dict restore everything _sample uses?)")


def _evaluate(report: _Report, cls: type, params: Mapping[str, Any], modality: str, device: Any, seed: int) -> None:
    ds = sample_dataset(modality, device, **_testing_data(cls, modality))
    generator = torch.Generator(device=device).manual_seed(seed)
    noisy = ds.x + 0.05 * torch.randn(ds.x.shape, generator=generator, device=device)
    if modality == "image":
        noisy = noisy.clamp(0, 1)
    derived = ds.replace(x=noisy, origin=torch.full_like(ds.y, int(Origin.AUGMENTED)),
                         step=torch.zeros_like(ds.y), parent=torch.arange(len(ds), device=ds.device), row_id=None)
    train = Dataset.concat([ds, derived])
    results = []
    for _ in range(2):
        ectx = EvalContext.from_seed(seed, ds, train=train, test=ds, val=ds, device=device)
        results.append(cls(params).evaluate(ectx))
    first, second = results
    if not report.check(isinstance(first, Metrics), f"evaluate() returned {type(first).__name__}, not Metrics"):
        return
    report.check(first.to_dict() == second.to_dict(), "the same seed gave different metrics")
    report.check(bool(first.measures or first.skipped), "evaluate() reported nothing (no measures, nothing skipped)")
    for path, measure in first.flat().items():
        report.check(measure.n >= 0, f"measure {path} has a negative sample size")


def _preprocess(report: _Report, cls: type, params: Mapping[str, Any], modality: str, device: Any, seed: int) -> None:
    ds = sample_dataset(modality, device, **_testing_data(cls, modality))
    outs = []
    for _ in range(2):
        pre = cls(params).fit(ds, _ctx(seed, device))
        outs.append((pre, pre.transform(ds)))
    (pre, first), (_, second) = outs
    if not _check_rows(report, first, ds, device, "transform()", keep_shape=False):
        return
    report.check(_same(first, second), "the same seed gave different preprocessed rows")
    if cls.changes_units:
        back = pre.inverse(first)
        report.check(back.shape == ds.shape and torch.allclose(back.x, ds.x, rtol=1e-4, atol=1e-4),
                     "inverse(transform(x)) must give x back")
    state = pre.state_dict()
    restored = cls(params).load_state_dict(state)
    report.check(_same(restored.transform(ds), first), "a preprocessor restored from state_dict() must transform alike")


def _source(report: _Report, cls: type, params: Mapping[str, Any], modality: str, device: Any, seed: int) -> None:
    first = cls(params).load(_ctx(seed, device))
    second = cls(params).load(_ctx(seed, device))
    parts = lambda r: [r] if isinstance(r, Dataset) else [p for p in (r.train, r.val, r.test) if p is not None]  # noqa: E731
    if not report.check(isinstance(first, (Dataset, Splits)), "load() must return a Dataset or Splits"):
        return
    report.check([p.fingerprint() for p in parts(first)] == [p.fingerprint() for p in parts(second)],
                 "loading twice gave different data")
    if cls.streams:  # a streaming source reads, a batch of 3 rows at a time, what load() gives
        scan = cls(params).scan(_ctx(seed, device))
        names = ["train", "val", "test"] if isinstance(first, Splits) else [None]
        for name, part in zip(names, [first] if names == [None] else [first.train, first.val, first.test]):
            rows = np.flatnonzero((scan.labels >= 0) & (True if name is None else scan.split == name))
            read = [scan.read(rows[i:i + 3]) for i in range(0, len(rows), 3)]
            report.check((part is None and not read) or (part is not None and read and torch.equal(
                torch.cat([r.x for r in read]), part.x) and torch.equal(torch.cat([r.y for r in read]), part.y)),
                f"scan().read() gave other rows than load() for {name or 'the data'}")


def _observe(report: _Report, cls: type, params: Mapping[str, Any], modality: str, device: Any, seed: int) -> None:
    """An observer opens, takes one event of every kind (with the data the host sends) and closes."""
    import torch

    from .context import EVENT_KINDS, Event

    ds = sample_dataset(modality)
    data = {"train_progress": {"iteration": 1, "losses": {"loss": 0.5}},
            "samples": {"iteration": 1, "images": torch.rand(4, 1, 8, 8), "labels": torch.arange(4) % 2},
            "step_finished": {"kind": "augment", "rows_in": len(ds), "rows_out": len(ds),
                              "counts": {"by_class": {c: 1 for c in ds.classes}}},
            "run_finished": {"metrics": Metrics()}}
    instance = cls(params).open(_ctx(seed, device))
    try:
        for kind in EVENT_KINDS:
            instance.observe(Event(kind, step=0, name="kit", data=data.get(kind, {})))
    finally:
        instance.close()


_BEHAVIOUR: dict[str, Callable[..., None]] = {
    "augment": _augment, "resample": _resample, "generate": _generate, "evaluate": _evaluate,
    "preprocess": _preprocess, "source": _source, "observe": _observe,
}


def parametrize_components(kind: str | None = None, registry: Any = None) -> Any:
    """A ``pytest.mark.parametrize`` over every installed component (of one kind), as
    ``component_info`` (a `setforge.registry.ComponentInfo`), with readable ids."""
    import pytest

    from .registry import default_registry

    infos = (registry or default_registry()).components(kind)
    return pytest.mark.parametrize("component_info", infos, ids=[f"{i.kind}/{i.name}" for i in infos])
