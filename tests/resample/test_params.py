"""Each resampler's Params against imbalanced-learn's own ``_parameter_constraints`` and defaults."""

from __future__ import annotations

import inspect
import numbers

import pytest
from sklearn.utils._param_validation import Interval, StrOptions

from setforge import ConfigError, create

from .test_imblearn_samplers import CASES

NAMES = sorted([*CASES, "smote-nc", "smoten"])


def component(name: str) -> type:
    return type(create("resample", name))


def accepts(cls: type, field: str, value: object) -> bool:
    try:
        cls.parse_params({field: value})
    except ConfigError:
        return False
    return True


def is_object_form(constraint: object) -> bool:
    """A constraint that names an object (an estimator, a callable, an array of column indices, a
    random state): such a form is offered as a named choice or left out, documented either way."""
    if constraint in ("array-like", "random_state") or constraint is callable:
        return True
    if isinstance(constraint, type) and not issubclass(constraint, (numbers.Number, dict, list)) \
            and constraint.__module__ != "collections.abc":
        return True
    return type(constraint).__name__ == "HasMethods"


def probe(cls: type, field: str, constraint: object) -> list[str]:
    """What imbalanced-learn accepts under `constraint` that the Params refuse (or vice versa)."""
    problems = []

    def want(value: object, ok: bool) -> None:
        if accepts(cls, field, value) != ok:
            problems.append(f"{field}={value!r} should be {'accepted' if ok else 'refused'}")

    if isinstance(constraint, Interval):
        step = 1 if constraint.type is numbers.Integral else 1e-3
        if constraint.left is not None:
            want(constraint.left, constraint.closed in ("left", "both"))
            want(constraint.left - step, False)
            want(constraint.left + step, True)
        if constraint.right is not None:
            want(constraint.right, constraint.closed in ("right", "both"))
            want(constraint.right + step, False)
    elif isinstance(constraint, StrOptions):
        for option in constraint.options:
            want(option, True)
        want("surely-not-an-option", False)
    elif constraint == "boolean":
        want(True, True)
        want(False, True)
    elif constraint is None:
        want(None, True)
    elif constraint is numbers.Real:
        want(0.25, True)
    elif constraint is numbers.Integral:
        want(2, True)
    elif constraint == "cv_object":
        want(3, True)  # the int form: number of folds
    elif isinstance(constraint, type) and issubclass(constraint, (dict,)) or getattr(constraint, "__name__", "") == "Mapping":
        if field == "sampling_strategy":
            want({"0": 5}, True)
            want({0: 5}, True)
        else:
            want({"0": 0.5}, True)
    elif constraint is list:
        want(["0"], True)
        want([0, "1"], True)
    return problems


@pytest.mark.parametrize("name", NAMES)
def test_params_follow_imblearn_constraints(name):
    cls = component(name)
    imblearn_cls = cls._imblearn_type()
    constraints = imblearn_cls._parameter_constraints
    defaults = {k: p.default for k, p in inspect.signature(imblearn_cls.__init__).parameters.items()}
    fields = cls.Params.model_fields
    left_out = {key.split(" (")[0] for key in cls.params_left_out}
    named = getattr(cls, "named_choices", {})
    extras = getattr(cls, "setforge_params", {})
    problems = []
    for param, forms in constraints.items():
        plain = [c for c in forms if not is_object_form(c)]
        if param not in fields:
            if plain and param not in left_out:
                problems.append(f"{param} takes plain values {plain} but is neither a param nor in params_left_out")
            continue
        if param in named:
            continue
        for constraint in plain:
            if param == "sampling_strategy" and cls.family == "clean" and isinstance(constraint, Interval):
                assert "sampling_strategy (float)" in cls.params_left_out
                continue
            problems += probe(cls, param, constraint)
        if any(is_object_form(c) for c in forms) and None not in forms and param not in left_out \
                and param != "sampling_strategy" and not any(isinstance(c, Interval) for c in forms):
            problems.append(f"{param}: its object form must be documented in params_left_out")
        default = fields[param].default
        if default != defaults[param]:
            problems.append(f"{param} defaults to {default!r}, imbalanced-learn to {defaults[param]!r}")
    for field in fields:
        if field not in constraints and field not in extras:
            problems.append(f"{field} is not an imbalanced-learn param and not listed in setforge_params")
    for param in named:
        assert param in fields and param in constraints and defaults[param] is None
    assert "random_state" not in fields
    if "random_state" in constraints:
        assert "random_state" in cls.params_left_out
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", NAMES)
def test_docstring_documents_what_is_left_out(name):
    cls = component(name)
    doc = cls.__doc__ or ""
    for key in cls.params_left_out:
        param = key.split(" (")[0]
        if param != "sampling_strategy":
            assert param in doc, f"{name}: the docstring must say that {param} is left out"


def test_k_neighbors_auto_is_offered_by_the_smote_family():
    for name in ("smote", "smote-nc", "smoten", "adasyn", "borderline-smote", "svm-smote", "kmeans-smote",
                 "smote-enn", "smote-tomek"):
        cls = component(name)
        param = "n_neighbors" if name == "adasyn" else "k_neighbors"
        assert accepts(cls, param, "auto") and not accepts(cls, param, 0)
