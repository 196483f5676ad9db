"""The headline's step gain names the model and seeds behind it when they are not the headline's:
an ablation that trained another model than utility's measured its gain on that model."""

from __future__ import annotations

from setforge.tools.headline import headline


def _report(utility_params, ablation_params):
    def measure(value, std=None):
        return {"value": value, "n": 82, "std": std}

    measures = {"utility": {"raw/macro_f1": measure(0.8923, 0.0208), "optimised/macro_f1": measure(0.8763, 0.0127),
                            "delta/macro_f1": measure(-0.0159, 0.02)},
                "ablation": {"step/1-random-over/gain/macro_f1": measure(-0.0455, 0.01)}}
    table = {"steps": {"header": ["step", "macro_f1 after it", "gain when added", "verdict"],
                       "rows": [["1-random-over", "0.8569", "-0.0455 ± 0.0100", "hurt"]]}}
    return {"evaluators": {"utility": {"name": "utility", "params": utility_params},
                           "ablation": {"name": "ablation", "params": {"score": "macro_f1", **ablation_params}}},
            "metrics": {"measures": measures, "tables": {"ablation": table}}}


UTILITY = {"model": "mlp", "repeats": 5, "epochs": 100, "patience": 10, "batch_size": 128, "lr": None,
           "weight_decay": 1e-4, "hidden": 128, "calibration_bins": 15}


def test_a_step_gain_from_another_model_says_whose_it_is():
    # r7: "step 1-random-over cost -0.0455 macro f1 (hurt)" came from ablation's logistic regression with
    # 3 seeds, beside utility's mlp with 5
    other = {**UTILITY, "model": "logistic-regression", "repeats": 3}
    del other["calibration_bins"]
    text = headline(_report(UTILITY, other)).text()
    assert text.endswith("step 1-random-over cost -0.0455 macro f1 (hurt; ablation's logistic-regression, 3 seeds, "
                         "not utility's mlp, 5 seeds)")
    # a training param that differs is named too; the same model and seeds add nothing
    assert "(hurt; ablation's epochs 20, not utility's epochs 100)" in headline(
        _report(UTILITY, {**UTILITY, "epochs": 20})).text()
    assert headline(_report(UTILITY, dict(UTILITY))).text().endswith("macro f1 (hurt)")
    # two linear models do not differ by hidden units they do not have
    linear = {**UTILITY, "model": "logistic-regression"}
    assert headline(_report(linear, {**linear, "hidden": 64})).text().endswith("macro f1 (hurt)")
    # an evaluator that records no model (a third party's gain layout) gets no note
    assert headline(_report(UTILITY, {})).text().endswith("macro f1 (hurt)")
