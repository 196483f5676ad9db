"""``setforge new-plugin NAME --kind KIND``: a plugin package with its entry point and a first test.

The package is a working component of the chosen kind (small, but real), so that ``pip install -e
.`` then ``pytest`` passes before the author changes a line.
"""

from __future__ import annotations

import importlib.metadata
import keyword
import re
import shutil
import textwrap
from pathlib import Path

from ..errors import ConfigError, OutputError
from ..hookspecs import KINDS, REGISTER_HOOK_FOR_KIND

__all__ = ["new_plugin"]

_BASE = {"source": "Source", "preprocess": "Preprocessor", "augment": "Augmenter", "resample": "Resampler",
         "generate": "Generator", "evaluate": "Evaluator", "observe": "Observer"}

#: Names the generated module and its test import: a component class named like one of them would
#: shadow it (a source named ``dataset`` would build itself instead of a ``Dataset``).
_TAKEN_CLASS_NAMES = frozenset({"Dataset", "Metrics", "Origin", "Field", "Registry", *_BASE.values()})

_BODIES = {
    "augment": '''
class {cls}(Augmenter):
    """Shifts the brightness of each image by its own random amount."""

    name = "{name}"
    modalities = ("image",)

    class Params(Augmenter.Params):
        max_delta: float = Field(0.2, ge=0.0, le=1.0, description="largest brightness change")

    def _make_params(self, x, y, generator):
        delta = torch.rand(x.shape[0], generator=generator, device=x.device) * 2 - 1
        return {{"delta": delta * self.params.max_delta}}

    def _transform(self, x, y, params):
        return (x + params["delta"].view(-1, *([1] * (x.ndim - 1)))).clamp(0.0, 1.0)
''',
    "resample": '''
class {cls}(Resampler):
    """Duplicates random rows of each smaller class until it matches the largest."""

    name = "{name}"
    modalities = ("image", "tabular")

    def _resample(self, ds, ctx):
        counts = torch.bincount(ds.y, minlength=ds.num_classes)
        picks = []
        for label, count in enumerate(counts.tolist()):
            missing = int(counts.max()) - count
            if missing and count:
                rows = (ds.y == label).nonzero().flatten()
                picks.append(rows[torch.randint(len(rows), (missing,), generator=ctx.rng.torch, device=ds.device)])
        new = torch.cat(picks) if picks else torch.zeros(0, dtype=torch.int64, device=ds.device)
        return torch.arange(len(ds), device=ds.device), ds.x[new], ds.y[new], new
''',
    "generate": '''
class {cls}(Generator):
    """Samples each class's mean plus Gaussian noise of the class's spread."""

    name = "{name}"
    modalities = ("image", "tabular")

    class Params(Generator.Params):
        scale: float = Field(0.5, ge=0.0, description="noise as a share of each class's standard deviation")

    def _fit(self, ds, ctx):
        self.mean = torch.stack([ds.x[ds.y == c].mean(0) for c in range(ds.num_classes)])
        self.std = torch.stack([ds.x[ds.y == c].std(0, unbiased=False) for c in range(ds.num_classes)])

    def _sample(self, labels, ctx):
        noise = torch.randn((len(labels), *self.row_shape), generator=ctx.rng.torch, device=ctx.device)
        out = self.mean[labels] + self.params.scale * self.std[labels] * noise
        return out.clamp(0.0, 1.0) if self.modality == "image" else out

    def _state_dict(self):
        return {{"mean": self.mean, "std": self.std}}

    def _load_state_dict(self, state):
        self.mean, self.std = state["mean"], state["std"]
''',
    "evaluate": '''
class {cls}(Evaluator):
    """Counts the rows of the optimised training set by origin."""

    name = "{name}"

    def _evaluate(self, ectx):
        metrics = Metrics()
        for origin in Origin:
            count = int((ectx.train.origin == int(origin)).sum())
            metrics.add(f"rows/{{origin.label}}", count, n=len(ectx.train))
        return metrics
''',
    "observe": '''
class {cls}(Observer):
    """Prints each step's row counts as the run goes."""

    name = "{name}"

    def _observe(self, event):
        if event.kind == "step_finished":
            print(f"[{{event.step}}] {{event.name}}: {{event.data['rows_in']}} -> {{event.data['rows_out']}} rows")
''',
    "preprocess": '''
class {cls}(Preprocessor):
    """Divides each numeric column by its largest absolute value on the training split."""

    name = "{name}"
    modalities = ("tabular",)
    changes_units = True

    def _fit(self, train, ctx):
        self.scale = train.x.abs().amax(0).clamp(min=1e-12)

    def _transform(self, ds):
        return ds.replace(x=ds.x / self.scale.to(ds.device))

    def _inverse(self, ds):
        return ds.replace(x=ds.x * self.scale.to(ds.device))

    def _state_dict(self):
        return {{"scale": self.scale}}

    def _load_state_dict(self, state):
        self.scale = torch.as_tensor(state["scale"])
''',
    "source": '''
class {cls}(Source):
    """Gaussian blobs, one per class: a synthetic tabular dataset."""

    name = "{name}"
    modalities = ("tabular",)

    class Params(Source.Params):
        rows_per_class: int = Field(50, ge=1, description="rows drawn for each class")
        classes: int = Field(3, ge=2, description="number of classes")
        features: int = Field(4, ge=1, description="number of columns")

    def _load(self, ctx):
        p = self.params
        generator = torch.Generator().manual_seed(ctx.rng.sk_seed())
        y = torch.arange(p.classes).repeat_interleave(p.rows_per_class)
        centres = 3 * torch.randn(p.classes, p.features, generator=generator)
        x = centres[y] + torch.randn(len(y), p.features, generator=generator)
        return Dataset(x=x, y=y, classes=[f"class-{{i}}" for i in range(p.classes)], modality="tabular")
''',
}


def new_plugin(name: str, kind: str, folder: str | Path = ".") -> Path:
    """Create ``<folder>/setforge-<name>/`` and return its path."""
    if kind not in KINDS:
        raise ConfigError(problems=[("--kind", f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")])
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", name):
        raise ConfigError(problems=[("name", f"must be kebab-case like 'my-op' (lower-case letters and digits, words "
                                             f"joined by '-', starting with a letter), got {name!r}")])
    from ..registry import default_registry

    taken = {info.name: info for info in default_registry().components(kind)}
    if name in taken:  # two plugins registering one (kind, name) break every run that uses it
        raise ConfigError(problems=[("name", f"{taken[name].label} is already installed; choose another name "
                                             f"(`setforge plugins list` shows the names taken)")])
    try:  # installing a second distribution of this name would replace the first (contrib's setforge-text, say)
        installed = importlib.metadata.distribution(f"setforge-{name}")
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed is not None:
        raise ConfigError(problems=[("name", f"setforge-{name} {installed.version} is already installed, and "
                                             "installing this package would replace it; choose another name")])
    module = "setforge_" + name.replace("-", "_")
    cls = "".join(part.capitalize() for part in name.split("-"))
    if keyword.iskeyword(cls) or cls in _TAKEN_CLASS_NAMES:  # `class None` does not parse; `class Dataset` shadows
        cls += _BASE[kind]
    root = Path(folder) / f"setforge-{name}"
    if Path(folder).exists() and not Path(folder).is_dir():
        raise ConfigError(problems=[("--dir", f"{folder} is not a folder; give the folder to create the package in")])
    if root.exists():
        raise ConfigError(problems=[("name", f"{root} already exists; choose another name, or another --dir")])
    hook = REGISTER_HOOK_FOR_KIND[kind]
    body = textwrap.dedent(_BODIES[kind]).format(cls=cls, name=name).strip()
    code = f'''"""setforge plugin: the {kind} component '{name}'."""

import torch
from pydantic import Field

from setforge import Dataset, Metrics, Origin, hookimpl
from setforge import {_BASE[kind]}

__all__ = ["{cls}"]


{body}


@hookimpl
def {hook}():
    return [{cls}]
'''
    test = f'''from setforge.registry import Registry
from setforge.testing import check_component

from {module} import {cls}


def test_conforms_to_the_component_contract():
    check_component({cls})


def test_is_registered_through_its_entry_point():
    info = Registry().load().get("{kind}", "{name}")
    assert info.cls is {cls} and info.distribution == "setforge-{name}"
'''
    pyproject = f'''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "setforge-{name}"
version = "0.1.0"
description = "setforge {kind} plugin: {name}"
requires-python = ">=3.11"
dependencies = ["setforge"]

[project.optional-dependencies]
test = ["pytest"]

[project.entry-points.setforge]
{name} = "{module}"

[tool.setuptools]
packages = ["{module}"]
'''
    readme = f"""# setforge-{name}

A setforge `{kind}` plugin. Install it next to setforge and use it in a run file by name:

    pip install -e .
    setforge plugins show {kind}/{name}
    pytest

"""
    try:
        (root / module).mkdir(parents=True)
        (root / "tests").mkdir()
        (root / module / "__init__.py").write_text(code)
        (root / "tests" / f"test_{module}.py").write_text(test)
        (root / "pyproject.toml").write_text(pyproject)
        (root / "README.md").write_text(readme)
    except OSError as error:  # a read-only folder, a full disk: exit 5 naming the path, not a traceback
        shutil.rmtree(root, ignore_errors=True)  # (it did not exist before: no half-written package stays)
        raise OutputError(f"cannot create the plugin package {root}: {error.strerror or error}", errno=error.errno) \
            from error
    return root
