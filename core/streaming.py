"""Streaming runs: data larger than memory read, stepped and written a batch at a time
(``source.stream``; docs/scaling.md, "Data larger than memory").

A run streams with ``source.stream: true``, or with ``auto`` (the default) when its source can
(`Component.streams`, `Source.scan`) and its labelled rows would take more than
``source.stream_above`` bytes as float32. The source is then scanned (labels and layout, no
pixels), the split made from the labels alone (`split.carve`: the same rows as the run in
memory would take), and each part read ``batch_size`` rows at a time: val and test straight into
the output format's shard writer (`Format.stream`), each training batch through the steps first.

A step streams when its component does (`Component.streams`): an augment step augments each batch,
its classes and amounts planned from the class counts of the whole split (`StepKind.plan`), a
generate step loads its fitted generator (``params.checkpoint``) and samples its planned rows a
batch at a time after the data, through the later steps. Batch ``b`` of step ``i`` draws from
``Rng(seed, ("step", i, "batch", b))``, so a streamed run is the same for the same seed and
``batch_size``; its random draws differ from those of the run in memory. Under torchrun the
batches are shared out (batch *u*, counted over val, test, train and the generated rows, goes to
rank ``u % world_size``): every rank writes its own shards into the one ``<dir>.partial/``, and
rank 0 gathers the ranks' files and counts and writes the report; ``b`` stays the batch's number
in the whole run, so the rows written do not depend on the number of ranks. What needs every row at
once (resamplers, preprocessors, de-duplication, ``drop_leaked``) is refused: at validation with
``stream: true`` (exit 2, `problems`), with a `DataError` naming the data's size when ``auto``
chose to stream. Evaluators are skipped, with a warning.
"""

from __future__ import annotations

import inspect
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed
from .dataset import Dataset, Origin
from .errors import ConfigError, DataError
from .formats import write_npz_file
from .output import RunFolder
from .record import Tally, file_hash, report_head, write_report
from .split import split_index
from .steps import KIND, _amount, _uses_amount, amount_plan

__all__ = ["problems", "scan_if_streaming", "run_streaming"]

_ALTERNATIVES = ("set source.stream: false to hold every row in memory, or take steps that work batch by batch "
                 "(augment steps, generate steps with params.checkpoint)")


def problems(config: Any, registry: Any) -> list[tuple[str, str]]:
    """What keeps `config` from streaming, each as ``(place, message)`` (empty: it can stream)."""
    cls, formats = (lambda kind, name: registry.get(kind, name).cls), registry.formats()  # noqa: E731
    found = [(place, message) for place, message, bad in [
        ("source.stream", f"source {config.source.name!r} cannot stream; sources that can: "
                          f"{[c.name for c in registry.components('source') if c.cls.streams]}",
         not cls("source", config.source.name).streams),
        ("source.deduplicate", "compares every row with every other; a streaming run takes deduplicate: none",
         config.source.deduplicate.method != "none"),
        ("split.drop_leaked", "compares every training row with every test row; not in a streaming run",
         config.split.drop_leaked),
        ("output.format", f"{config.output.format!r} cannot be written a batch at a time; formats that can: "
                          f"{[name for name, f in formats.items() if f.stream is not None]}",
         config.output.format in formats and formats[config.output.format].stream is None)] if bad]
    found += [(f"preprocess[{i}]", "a preprocessor is fitted on every training row at once; not in a streaming run")
              for i in range(len(config.preprocess))]
    for i, step in enumerate(config.pipeline):
        refs = step.component_refs()
        if blocked := [ref.name for ref in refs if not cls(step.kind, ref.name).streams]:
            found.append((f"pipeline[{i}]", f"{step.kind} {blocked[0]!r} needs every row at once; {_ALTERNATIVES}"))
        elif step.kind == "generate" and refs[0].params.get("checkpoint") is None:
            found.append((f"pipeline[{i}].params.checkpoint", "a generator's training needs every row at once; a "
                          "streaming run samples a generator fitted by an earlier run (params.checkpoint)"))
    return found


def scan_if_streaming(run: Any) -> Any:
    """The source's `SourceScan` when `run` streams, else None (the run reads its data at once)."""
    source, asked = run.built.source, run.config.source.stream
    if asked is False or not source.streams:
        return None
    try:
        with run.guard(source, "scan"):
            scan = source.scan(run._ctx(("source",), None, name=source.name), on_invalid=run.config.source.on_invalid)
    except DataError:
        if asked is True:
            raise
        return None  # auto: the run reads it at once, and says what is wrong with it
    return scan if asked is True or scan.nbytes > run.config.source.stream_above else None


class _Streamer:
    """One streaming run: the scan, the split, one writer per part, the steps applied per batch."""

    def __init__(self, run: Any, scan: Any):
        self.run, self.scan, self.config = run, scan, run.config
        if self.config.split.group_by and scan.groups is None:
            raise DataError(f"split.group_by: source '{self.config.source.name}' gives no groups to keep together")
        # the rows of each part: those the same run in memory would put there
        self.index, self.method, _ = split_index(np.flatnonzero(scan.labels >= 0), scan.labels, scan.groups if
                                                 self.config.split.group_by else None, scan.split, self.config.split,
                                                 run.seed, len(scan.classes))
        run.resolve_classes(scan.classes)
        self.like = Dataset(x=torch.zeros((0, *scan.shape)), y=torch.zeros(0, dtype=torch.int64),
                            classes=scan.classes, modality=scan.modality, features=scan.features,
                            groups=None if scan.groups is None else torch.zeros(0, dtype=torch.int64))
        train_labels = scan.labels[self.index["train"]]
        self.real = counts = np.bincount(train_labels, minlength=len(scan.classes)).tolist()
        # where each real training row stands among its class's real rows (augment amounts, round-robin)
        self.position = np.zeros(len(train_labels), dtype=np.int64)
        for c in range(len(scan.classes)):
            self.position[train_labels == c] = np.arange(int((train_labels == c).sum()))
        self.counts_in, self.plans, self.batch = [], [], 0
        for step in run.built.steps:  # a streaming resampler's counts are not known before it runs: taken as kept
            plan = KIND[step.kind].plan(step.config, step.classes, counts, self.real, step.component, scan.classes)
            self.counts_in, self.plans = [*self.counts_in, counts], [*self.plans, plan or [0] * len(counts)]
            counts = [n + a for n, a in zip(counts, self.plans[-1])]
        self.tallies = [Tally(scan.classes) for _ in range(len(run.built.steps) + 1)]
        # under torchrun every rank writes its share of the batches into the one run folder
        self.folder = (run.folder if run.main else RunFolder(self.config.output.dir)).partial
        self.unit, self.taken, self.scanned = 0, 0, dict(run.built.source.dropped)

    def _skip(self, counted: bool) -> bool:
        """Whether the run's next batch (val, test, train, generated: one count) is another rank's
        (`distributed.takes`); a skipped training batch still counts in the batch numbers that key
        the steps' draws (`counted`), so the rows do not depend on the number of ranks."""
        mine, self.unit = distributed.takes(self.unit), self.unit + 1
        self.taken, self.batch = self.taken + mine, self.batch + (counted and not mine)
        return not mine

    def read(self, part: str) -> Iterator[Dataset]:
        """The rows of `part`, ``batch_size`` at a time, as real rows numbered within the part."""
        index, size = self.index[part], self.config.batch_size
        for start in range(0, len(index), size):
            if self._skip(part == "train"):
                continue
            with self.run.guard(self.run.built.source, "read"):
                ds = self.scan.read(index[start:start + size])
            source_rows = ds.row_id.cpu().numpy()
            groups = None if self.scan.groups is None else torch.as_tensor(self.scan.groups[source_rows])
            yield ds.replace(row_id=torch.as_tensor(np.searchsorted(index, source_rows)), groups=groups)

    def steps(self, ds: Dataset, first: int) -> Dataset:
        """`ds` through the steps from position `first` on, counted after each."""
        for step in self.run.built.steps[first:]:
            if step.kind != "generate":  # a generate step's rows join after the data (`generated`)
                ctx = self.run._ctx(("step", step.index, "batch", self.batch), None, step=step.index, name=step.name)
                with self.run.guard(step.component, step.kind):
                    ds = self._augment(step, ds, ctx) if step.kind == "augment" else \
                        KIND[step.kind].run(step.config, step.classes, step.component, ds, ctx, self.run.guard)[0]
            self.tallies[step.index + 1].add(ds)
        self.batch += 1
        return ds

    def _augment(self, step: Any, ds: Dataset, ctx: Any) -> Dataset:
        selected = KIND["augment"].selected(step.config, step.classes, counts := self.counts_in[step.index])
        if not _uses_amount(step.config):
            rows = torch.isin(ds.y, torch.tensor(selected, dtype=torch.int64, device=ds.device)).nonzero().flatten()
            return step.component.augment(ds, ctx, copies=step.config.copies, rows=rows)
        need = torch.tensor(amount_plan(_amount(step.config), counts, self.real, selected), dtype=torch.int64)
        y, is_real, real = ds.y.cpu(), ds.origin.cpu() == int(Origin.REAL), torch.tensor(self.real).clamp(min=1)
        position = torch.as_tensor(self.position)[ds.row_id.cpu().clamp(min=0)]
        copies = torch.where(is_real, need[y] // real[y] + (position < need[y] % real[y]).long(), 0)
        return step.component.augment(ds, ctx, copies=1, rows=torch.repeat_interleave(torch.arange(len(ds)), copies))

    def generated(self, step: Any) -> Iterator[Dataset]:
        """A generate step's planned rows, sampled a batch at a time from its loaded generator."""
        plan = self.plans[step.index]
        with self.run.guard(step.component, "fit"):  # params.checkpoint: one row tells the classes and shape
            if sum(plan):
                step.component.fit(self.scan.read(self.index["train"][:1]), self.run._ctx(("step", step.index), None))
        labels = torch.repeat_interleave(torch.arange(len(plan)), torch.tensor(plan))
        for start in range(0, len(labels), self.config.batch_size):
            if self._skip(True):
                continue
            ctx = self.run._ctx(("step", step.index, "batch", start), None, step=step.index, name=step.name)
            with self.run.guard(step.component, "sample"):
                yield self.tallies[step.index + 1].add(step.component.sample(labels[start:start + ctx.batch_size], ctx))

    def write(self) -> tuple[dict[str, list[Any]], dict[str, Tally]]:
        """This rank's batches of every part into the run folder's shards; its files by part and the
        val and test counts (the training rows are counted by step, in ``self.tallies``)."""
        shard = {"shard": (distributed.rank(), distributed.world_size())} if distributed.world_size() > 1 else {}
        if shard and not _takes_shard(self.run.format.stream):
            raise ConfigError(problems=[("output.format", f"format '{self.run.format.name}' cannot write a streaming run "
                                         f"across {distributed.world_size()} ranks: its stream writer takes no "
                                         f"shard=(rank, world_size) (docs/plugins.md); run one process")])
        files, tallies = {}, {}
        for part in ("val", "test", "train"):
            writer = self.run.format.stream(self.folder, part, self.like, self.config.output.shard_rows, **shard)
            if part == "train":
                for ds in self.read(part):
                    writer.add(self.steps(self.tallies[0].add(ds), 0))
                for step in (s for s in self.run.built.steps if s.kind == "generate"):
                    for ds in self.generated(step):
                        writer.add(self.steps(ds, step.index + 1))
            else:
                tallies[part] = tally = Tally(self.scan.classes)
                for ds in self.read(part):
                    writer.add(tally.add(ds))
            files[part] = writer.close()
        return files, tallies

    def gather(self, files: dict[str, list[Any]], parts: dict[str, Tally]) -> dict[str, Any] | None:
        """On rank 0, what the ranks wrote (files by part, their hashes), counted (the steps' and parts'
        tallies, rows dropped while reading) and took, added up (`distributed.summed`: rank 0 waits
        for every rank); None on the other ranks."""
        named = {part: [str(p.relative_to(self.folder)) for p in paths] for part, paths in files.items()}
        tallies = [*self.tallies, *parts.values()]
        written = int(sum(t.table.sum() for t in tallies[len(self.tallies) - 1:]))  # the last step's, val's, test's
        return distributed.summed({
            "files": named, "hashes": {n: file_hash(self.folder / n) for names in named.values() for n in names},
            "tables": np.stack([t.table for t in tallies]), "ranks": [{"batches": self.taken, "rows": written}],
            "dropped": dict(Counter(self.run.built.source.dropped) - Counter(self.scanned))})

    def join(self, done: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any], dict[str, int]]:
        """On rank 0: the ranks' counts (`gather`) into the tallies, each part's shards joined
        (`Format.join`, several ranks only), ``splits.npz``; the files' hashes, the parts' counts
        and the rows dropped."""
        parts = {part: Tally(self.scan.classes) for part in done["files"] if part != "train"}  # as `write` counts
        for tally, table in zip([*self.tallies, *parts.values()], done["tables"]):
            tally.table = table
        written = [write_npz_file(self.folder / "splits.npz", {f"{k}_index": v.astype(np.int64)
                                                              for k, v in self.index.items()})]
        for part, names in done["files"].items() if len(done["ranks"]) > 1 and self.run.format.join else ():
            rows = int((self.tallies[-1] if part == "train" else parts[part]).table.sum())
            written += self.run.format.join(self.folder, part, self.like, sorted(names), rows)
        hashes = {**done["hashes"], **{str(p.relative_to(self.folder)): file_hash(p) for p in written}}
        dropped = Counter(self.scanned) + Counter(done["dropped"])
        return hashes, {part: tally.counts() for part, tally in parts.items()}, dict(sorted(dropped.items()))


def run_streaming(run: Any, scan: Any) -> Any:
    """Run `run` (a `setforge.pipeline` run whose source was scanned) as a streaming run; its
    `RunResult` holds no rows (read them back with `setforge.load`)."""
    from .pipeline import RunResult

    config, started, found = run.config, time.perf_counter(), problems(run.config, run.registry)
    if found and config.source.stream is True:
        raise ConfigError(problems=found)
    if found:
        size = lambda n: next(f"{n / 2**s:.{min(s, 1)}f} {u}" for s, u in ((30, "GiB"), (20, "MiB"), (10, "KiB"), (0, "bytes"))
                              if n >= 2**s or not s)  # noqa: E731
        raise DataError(f"the source's {int((scan.labels >= 0).sum())} rows take {size(scan.nbytes)} as float32, more "
                        f"than source.stream_above ({size(config.source.stream_above)}), so the run streams (raise "
                        f"stream_above to read them at once), and " + "; ".join(f"{p}: {m}" for p, m in found))
    streamer = _Streamer(run, scan)  # (on resume it starts over: RunFolder.open removed an earlier try's shards)
    distributed.check_shared(streamer.folder)  # under torchrun: every rank sees rank 0's <dir>.partial/
    if run.built.evaluators:
        run.warnings.append("evaluate: skipped: evaluators need every row in memory, which a streaming run never holds")
    run.warnings += [f"pipeline[{s.index}].guard: not checked: a streaming run never holds the generated rows beside "
                     "the real val rows" for s in run.built.steps if s.kind == "generate" and s.config.guard_config.on_fail != "off"]
    if unlabelled := int((scan.labels == -1).sum()):  # (pseudo-label, which would use them, needs every row)
        run.warnings.append(f"source: {unlabelled} unlabelled rows left out: a streaming run has no step that labels them")
    done = streamer.gather(*streamer.write())
    if done is None:  # another rank: rank 0 writes the report and renames the folder
        return RunResult(Path(config.output.dir), {}, run.timings, run.metrics, *[streamer.like] * 4)
    (files, counts, dropped), after = streamer.join(done), [t.counts() for t in streamer.tallies]
    counts.update(raw_train=after[0], optimised=after[-1])
    steps = [{"index": s.index, "kind": s.kind, "name": s.name, "streamed": True, "rows_in": after[s.index]["rows"],
              "rows_out": after[s.index + 1]["rows"], "counts": after[s.index + 1]} for s in run.built.steps]
    ranked = {"ranks": done["ranks"]} if len(done["ranks"]) > 1 else {}
    report = {**report_head(run, streamer.like),
              "stream": {"bytes": scan.nbytes, "batch_size": config.batch_size, **ranked},
              "source": {"name": config.source.name, "own_split": scan.split is not None, "dropped_invalid": dropped,
                         **({"unlabelled": unlabelled} if unlabelled else {}),
                         # the rows the scan found valid, less those found invalid only when read
                         "rows": int((scan.labels >= 0).sum()) - sum(done["dropped"].values())},
              "split": {"method": streamer.method, "rows": {"train": after[0]["rows"], "val": counts["val"]["rows"],
                                                            "test": counts["test"]["rows"]}},
              "counts": counts, "steps": steps, "evaluators": {}, "metrics": {}, "warnings": run.warnings,
              "files": files}
    run.timings.update(stream=time.perf_counter() - started)
    write_report(run.folder.partial, report, run.timings)
    return RunResult(run.folder.commit(force=run.force), report, run.timings, run.metrics, *[streamer.like] * 4)


def _takes_shard(stream: Any) -> bool:
    """Whether a format's stream writer accepts ``shard=`` (named, or through ``**kwargs``)."""
    try:
        parameters = inspect.signature(stream).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: let the call tell
        return True
    return any(p.name == "shard" or p.kind is p.VAR_KEYWORD for p in parameters)
