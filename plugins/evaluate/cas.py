"""``cas``: do generated rows look like their requested class to a classifier trained on real rows?"""

from __future__ import annotations

from pydantic import Field

from setforge.context import EvalContext, Metrics
from setforge.dataset import Dataset, Origin

from ._comparison import path_segment
from ._downstream import DownstreamEvaluator, ModelParams, model_name, model_options, predicted_labels, trained_model

__all__ = ["ClassAgreementScore"]



class ClassAgreementScore(DownstreamEvaluator):
    """Share of generated rows that a classifier trained on the real training split assigns to their requested class.

    A classifier (the shared ``cnn`` for images, ``mlp`` otherwise, early-stopped on the real val
    split) is trained on the raw, all-real training split and predicts the class of every
    ``Origin.GENERATED`` row of the optimised set. Paths (under ``cas/``): ``overall`` (the share
    predicted as requested, ``n`` = generated rows) and ``by_class/<class>`` (the same for each
    class with generated rows). For scale, ``reference/overall`` and ``reference/by_class/<class>``
    give the same classifier's accuracy and per-class recall on the real test split: a generator
    whose rows score as high as real test rows is as recognisable as real data. (This is the
    "GAN-test" direction of Shmelkov et al. 2018; Ravuri & Vinyals' Classification Accuracy Score
    trains on generated rows and tests on real ones, which ``utility`` covers.)
    """

    name = "cas"
    modalities = ("image", "tabular", "audio")
    testing_params = {"epochs": 3, "patience": 2}

    auto_models = {"image": "cnn"}

    class Params(ModelParams):
        """The judging classifier and how it is trained."""

        model: model_name("auto") = Field(  # type: ignore[valid-type]
            "auto", description="the classifier trained on real rows (auto: cnn for images, mlp otherwise; "
                                "gradient-boosting: tabular rows; or a model an installed plugin contributes, "
                                "entry-point group setforge.models)")

    def _evaluate(self, ectx: EvalContext) -> Metrics:
        metrics = Metrics()
        generated = ectx.train[ectx.train.origin == int(Origin.GENERATED)]
        if len(generated) == 0:
            metrics.skip("overall", "the optimised set has no generated rows (add a generate step)")
            return metrics
        real = ectx.raw_train[ectx.raw_train.origin == int(Origin.REAL)]
        model = self._classifier(ectx, real)
        predicted = predicted_labels(ectx, model, generated)
        requested = generated.y.cpu()
        agree = predicted == requested
        metrics.add("overall", float(agree.double().mean()), n=len(generated), better="higher")
        for c, name in enumerate(generated.classes):
            rows = requested == c
            if bool(rows.any()):
                metrics.add(f"by_class/{path_segment(name)}", float(agree[rows].double().mean()), n=int(rows.sum()),
                            better="higher")
        test = ectx.test
        if test is None or len(test) == 0:
            metrics.skip("reference", "there is no real test split to compare with")
            return metrics
        test_predicted = predicted_labels(ectx, model, test)
        test_y = test.y.cpu()
        metrics.add("reference/overall", float((test_predicted == test_y).double().mean()), n=len(test),
                    better="higher")
        for c, name in enumerate(test.classes):
            rows = test_y == c
            if bool(rows.any()):
                metrics.add(f"reference/by_class/{path_segment(name)}", float((test_predicted[rows] == c).double().mean()),
                            n=int(rows.sum()), better="higher")
        return metrics

    def _classifier(self, ectx: EvalContext, real: Dataset):
        params = self.params
        kind = self.model_kind(real.modality)
        # The shared downstream model on the real rows (seed 0 of the run's shared evaluator
        # randomness): the very model `utility` and `ablation` train as their raw baseline when
        # they ask for the same model, so it trains once per run.
        return trained_model(ectx, model_options(params, kind), real, repeat=0)
