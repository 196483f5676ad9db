"""The hook specifications: the whole contract between setforge and its plugins.

A plugin is a module (or object) registered under the entry-point group ``setforge`` that
implements some of these hooks, marked with `hookimpl`::

    # my_plugin.py               pyproject.toml:
    from setforge import hookimpl  # [project.entry-points.setforge]
                                   # my-plugin = "my_plugin"
    @hookimpl
    def setforge_register_augmenters():
        return [MyAugmenter]

Every ``setforge_register_*`` hook returns a list of component classes (subclasses of the
matching base in `setforge.components`); the host validates them, rejects duplicate names
within a kind (naming both distributions) and builds instances itself. Implementations may take
fewer arguments than the spec, so specs can grow. Only `hookimpl` is public.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from typing import Any

    from .components import Augmenter, Evaluator, Generator, Observer, Preprocessor, Resampler, Source
    import torch

    from .context import Event
    from .dataset import Dataset
    from .formats import Format

__all__ = ["hookimpl"]  # the rest is for the host (registry) and docs

PROJECT = "setforge"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --------------------------------------------------------------------------- registration
@hookspec
def setforge_register_sources() -> list[type["Source"]]:
    """Return the dataset sources this plugin provides.

    Called once, when the registry loads plugins (before a run file is validated, and for
    ``setforge plugins``). Return a list of subclasses of `setforge.Source`; each reads data in
    ``_load(ctx)`` and returns a `Dataset` of real rows or its own `Splits`.

    Example::

        @hookimpl
        def setforge_register_sources():
            return [ParquetSource]
    """


@hookspec
def setforge_register_preprocessors() -> list[type["Preprocessor"]]:
    """Return the preprocessors this plugin provides.

    Called once, when the registry loads plugins. Return a list of subclasses of
    `setforge.Preprocessor`; the host fits each on the training split only and applies it to
    every split, and inverts it before writing when it changes units.

    Example::

        @hookimpl
        def setforge_register_preprocessors():
            return [LogScale]
    """


@hookspec
def setforge_register_augmenters() -> list[type["Augmenter"]]:
    """Return the augmenters this plugin provides.

    Called once, when the registry loads plugins. Return a list of subclasses of
    `setforge.Augmenter`; each draws per-row parameters in ``_make_params`` and applies them
    deterministically in ``_transform``. The host owns how many copies of which rows are made.

    Example::

        @hookimpl
        def setforge_register_augmenters():
            return [Invert]
    """


@hookspec
def setforge_register_resamplers() -> list[type["Resampler"]]:
    """Return the resamplers this plugin provides.

    Called once, when the registry loads plugins. Return a list of subclasses of
    `setforge.Resampler`; each returns which rows stay and which new rows to add in
    ``_resample``; the host keeps provenance.

    Example::

        @hookimpl
        def setforge_register_resamplers():
            return [MyUnderSampler]
    """


@hookspec
def setforge_register_generators() -> list[type["Generator"]]:
    """Return the generators this plugin provides.

    Called once, when the registry loads plugins. Return a list of subclasses of
    `setforge.Generator`; each trains in ``_fit`` and samples one batch of requested labels in
    ``_sample``. The host owns how many rows of which classes are generated.

    Example::

        @hookimpl
        def setforge_register_generators():
            return [MyDiffusion]
    """


@hookspec
def setforge_register_evaluators() -> list[type["Evaluator"]]:
    """Return the evaluators this plugin provides.

    Called once, when the registry loads plugins. Return a list of subclasses of
    `setforge.Evaluator`; each returns `Metrics` from ``_evaluate(ectx)``, with the sample size
    behind every number.

    Example::

        @hookimpl
        def setforge_register_evaluators():
            return [MyMetric]
    """


@hookspec
def setforge_register_formats() -> list["Format"]:
    """Return the ``output.format`` writers and readers this plugin provides.

    Called once, when the registry loads plugins. Return a list of `setforge.formats.Format`
    (``name``, ``write(folder, split, ds, shard_rows=...) -> files``, ``read(folder, split) ->
    Dataset``, ``check(ds)`` raising a `DataError` for data it cannot write, run before any step).
    ``npz`` is the core's own; the other built-in formats come from plugin ``builtin-output``. A
    name registered twice is unusable until one plugin is disabled. Anything a format's functions
    (or its stream writer's ``add`` and ``close``) raise is reported as the plugin's failure (exit
    4, naming it), a `DataError` as bad data (exit 3), as for components.

    Example::

        @hookimpl
        def setforge_register_formats():
            return [Format("parquet", write_parquet, read_parquet)]
    """


@hookspec
def setforge_register_observers() -> list[type["Observer"]]:
    """Return the run observers this plugin provides.

    Called once, when the registry loads plugins. Return a list of subclasses of
    `setforge.Observer`; a run file enables one with ``observe: [NAME]`` (``setforge run
    --observe NAME`` adds one from the command line). The host builds it like any
    component, opens it on the run folder when the run starts (``_open(ctx)``), sends it every
    event of the run (``_observe(event)``) and closes it at the end, also when the run fails
    (``_close()``). Unlike ``setforge_on_event``, which every installed plugin receives, an
    observer works only in the runs that ask for it, with params of its own.

    Example::

        @hookimpl
        def setforge_register_observers():
            return [MlflowObserver]
    """


# ----------------------------------------------------------------------------- services
@hookspec(firstresult=True)
def setforge_find_duplicates(ds: "Dataset", method: str, threshold: float, priority: "torch.Tensor"
                             ) -> "torch.Tensor | None":
    """Find the duplicate rows of `ds` for ``source.deduplicate`` (before the split).

    `method` is ``"near"`` (closer than `threshold`, the root-mean-square difference per value);
    `priority` (``(N,)`` int64, lower kept first, then row order) ranks the test part first, then
    val, then train, so no copy straddles two parts. Return ``(N,)`` int64 on ``ds``'s device:
    -1 for a kept row, else the index of the kept row it duplicates; or None to leave the
    question to the next plugin. The first plugin (pluggy order) returning a result wins; a run
    file asking for it with no provider is refused at ``validate``. Provided by plugin
    ``builtin-resample`` (the definition of its de-duplicating resampler).
    """


@hookspec(firstresult=True)
def setforge_find_leaked(train: "Dataset", test: "Dataset", evaluate: list[tuple[str, dict]]
                         ) -> "torch.Tensor | None":
    """Mark the training rows that copy a test row, for ``split.drop_leaked`` (numeric data).

    `evaluate` is the run file's evaluators as ``(name, params)``, so a provider can follow the
    params of its own evaluator when the run file lists it. Return ``(len(train),)`` bool, or None
    to leave the question to the next plugin; the first result wins, and a run file asking for it
    with no provider is refused at ``validate``. Provided by plugin ``builtin-evaluate`` (the
    definition of its leak evaluator: exact and near copies).
    """


# ------------------------------------------------------------------------- guard service
@hookspec(firstresult=True)
def setforge_score_generated(real: "Dataset", generated: "Dataset", val: "Dataset", rng: "Any", device: "Any"
                             ) -> "dict | None":
    """Score the rows a generate step made, for the host's guard on every generate step.

    Called after a generator has sampled (unless the step says ``guard: off``): `real` is the
    step input's real rows, `generated` the new rows, `val` the real val split, `rng` a `Rng` for
    the judging model, `device` the run's device. Return ``{"generated": float, "reference":
    float, "model": str, "left_out": {class: reason}, ...}`` — the share of generated rows a
    classifier trained on `real` assigns to their requested class, and the same classifier's recall
    on real `val` rows, each class weighted by its share of those generated rows; classes without
    val rows are left out of both and named in ``left_out`` (the host warns of them, and checks
    nothing when every class is left out) — or None to leave the question to the next plugin. The
    first result wins; a run file with a guarded generate step and no provider is refused at
    ``validate``. Provided by ``builtin-evaluate`` (the CAS machinery).
    """


# --------------------------------------------------------------------------------- events
@hookspec
def setforge_on_event(event: "Event") -> None:
    """Observe a run: called for every `Event` the run emits, in order.

    Kinds: ``run_started``, ``step_started``, ``step_finished``, ``train_progress`` (losses
    during generator training), ``samples`` (images drawn while training) and ``run_finished``
    (with the metrics). Return values are ignored; an exception is reported with the plugin's
    name and does not stop the run.

    Example::

        @hookimpl
        def setforge_on_event(event):
            if event.kind == "train_progress":
                print(event.step, event.data["losses"])
    """


REGISTER_HOOK_FOR_KIND = {
    "source": "setforge_register_sources",
    "preprocess": "setforge_register_preprocessors",
    "augment": "setforge_register_augmenters",
    "resample": "setforge_register_resamplers",
    "generate": "setforge_register_generators",
    "evaluate": "setforge_register_evaluators",
    "observe": "setforge_register_observers",
}

KINDS = tuple(REGISTER_HOOK_FOR_KIND)
#: The run-file keys that need a service hook, with the hook: validation refuses them with no provider.
SERVICE_HOOKS = {"source.deduplicate": "setforge_find_duplicates", "split.drop_leaked": "setforge_find_leaked"}
