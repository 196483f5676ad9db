"""``tstr``: train on synthetic, test on real — a model trained on generated rows alone, scored on the
real test split next to the same model trained on the real training rows."""

from __future__ import annotations

from pydantic import Field

from setforge.context import EvalContext, Metrics
from setforge.dataset import Dataset, Origin

from .._shared.classifiers import classification_scores
from ._downstream import DownstreamEvaluator, ModelParams, model_name, model_options, test_probabilities

__all__ = ["TrainSyntheticTestReal"]

_SCORES = ("macro_f1", "balanced_accuracy")


class TrainSyntheticTestReal(DownstreamEvaluator):
    """Train on generated rows only, test on the real test split, beside train-real-test-real, per generator step.

    Paths (under ``tstr/``): ``real/<score>`` (the model trained on the real training rows: the
    reference), ``generated/<score>`` (trained on every generated row of the optimised set),
    ``step/<i>/<score>`` (trained on the rows that pipeline step ``i`` generated, for each generate
    step), and for each of these ``.../ratio/<score>`` (synthetic over real; 1 means the generated
    rows teach the model as much as real rows do) and ``.../train_rows``. Scores: ``macro_f1`` and
    ``balanced_accuracy``; ``n`` is the number of test rows (``train_rows``: the training rows).
    Every model shares kind, options and seed (utility's raw model is the real one when their
    settings agree) and is early-stopped on the real val split. Generated
    rows that leave out a class present in the test split cannot teach it, so that set is skipped,
    naming the classes (generate every class, with ``per_class:`` or ``multiply:``).
    """

    name = "tstr"
    modalities = ("image", "tabular", "audio")
    testing_params = {"epochs": 5, "patience": 2}

    auto_models = {"tabular": "gradient-boosting", "image": "cnn"}

    class Params(ModelParams):
        """The downstream model and how it is trained."""

        model: model_name("auto") = Field(  # type: ignore[valid-type]
            "auto", description="the model trained on each set (auto: gradient-boosting for tabular rows, cnn for "
                                "images, mlp otherwise; or a model an installed plugin contributes, entry-point "
                                "group setforge.models)")

    def _evaluate(self, ectx: EvalContext) -> Metrics:
        metrics = Metrics()
        test = ectx.test
        if test is None or len(test) == 0:
            metrics.skip("real", "there is no real test split to score on")
            return metrics
        generated = ectx.train.origin == int(Origin.GENERATED)
        sets: list[tuple[str, Dataset]] = []
        if bool(generated.any()):
            sets.append(("generated", ectx.train[generated]))
        for record in ectx.steps:
            if record.kind != "generate":
                continue
            out = record.output
            rows = (out.origin == int(Origin.GENERATED)) & (out.step == record.index)
            if bool(rows.any()):
                sets.append((f"step/{record.index}", out[rows]))
            else:
                metrics.skip(f"step/{record.index}", f"generate step {record.index} ({record.name}) made no rows")
        if not sets:
            metrics.skip("generated", "the optimised set has no generated rows (add a generate step)")
        real = ectx.raw_train[ectx.raw_train.origin == int(Origin.REAL)]
        options = model_options(self.params, self.model_kind(real.modality))
        n = len(test)
        # seed 0 of the run's shared evaluator seeds, as utility's and ablation's raw model: with the
        # same kind and options it is the same cached model and reports the same baseline
        predict = lambda rows: test_probabilities(ectx, options, rows, 0).argmax(dim=1)  # noqa: E731
        reference = classification_scores(test.y, predict(real), test.num_classes)
        for score in _SCORES:
            metrics.add(f"real/{score}", reference[score], n=n, better="higher")
        metrics.add("real/train_rows", float(len(real)), n=len(real))
        tested = set(test.y.tolist())
        for what, rows in sets:
            missing = sorted(tested - set(rows.y.tolist()))
            if missing:
                names = ", ".join(repr(test.classes[c]) for c in missing)
                metrics.skip(what, f"the generated rows have no class {names}, which the test split holds; generate "
                                   f"every class (per_class: or multiply:) to measure train-synthetic-test-real")
                continue
            scores = classification_scores(test.y, predict(rows), test.num_classes)
            for score in _SCORES:
                metrics.add(f"{what}/{score}", scores[score], n=n, better="higher")
                if reference[score] > 0:
                    metrics.add(f"{what}/ratio/{score}", scores[score] / reference[score], n=n, better="higher")
                else:
                    metrics.skip(f"{what}/ratio/{score}", f"the real rows' model scores 0 {score} on the test split: "
                                                           "no ratio to it")
            metrics.add(f"{what}/train_rows", float(len(rows)), n=len(rows))
        return metrics
