"""The run file's models: what a run file may say, with pydantic validation of each key's value,
plus the introspection of the models that overrides, problems and docs share.

Reading a file and ``--set`` overrides are in `setforge.runfile`; folding pydantic's errors into
``(place, message)`` problems in `setforge.problems`; checking the components a run file names in
`setforge.checks`; what each step kind's host keys mean in `setforge.steps`.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, StrictBool, StrictInt, StrictStr,
                      ValidationError, ValidationInfo, field_validator, model_validator)
from pydantic_core import PydanticCustomError

from .steps import ALL_HOST_KEYS, AMOUNT_KEYS, HOST_KEYS, STEP_KINDS, step_problems

__all__ = ["type_words", "ComponentRef", "SourceConfig", "DeduplicateConfig", "SplitConfig", "GuardConfig", "StepConfig", "OutputConfig",
           "RunConfig", "STEP_KINDS", "HOST_KEYS", "SUFFIXES"]

#: Run-file formats by file extension.
SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}
_MAX_FILE_BYTES = 16 * 2**20  # a run file holds settings, not data
_STRICT = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
_PLACED_ERROR = "setforge_placed"  # ctx["setforge_at"]: the keys (under the model) the error is about
#: The validation-context key of the component checker (`checks.load_and_check` puts it there):
#: ``checker(kind, name, params, name_loc)`` returns the parsed params or raises a ValidationError
#: whose locations are relative to the model holding the reference.
COMPONENT_CHECKER = "setforge_component_checker"


# =============================================================================== models
class ComponentRef(BaseModel):
    """A component by name, with its params: ``NAME`` or ``{name: NAME, params: {...}}``."""

    model_config = _STRICT
    name: str = Field(min_length=1, description="the component's name (see `setforge plugins list`)")
    params: dict[str, Any] = Field(default_factory=dict, description="the component's params "
                                                                     "(see `setforge plugins show KIND/NAME`)")

    _parsed: BaseModel | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def checked_params(self) -> BaseModel | dict[str, Any]:
        """The params as the component checker parsed them (defaults filled, paths resolved against
        the run file's folder), or as given when the run file was read without a registry."""
        return self.params if self._parsed is None else self._parsed


def _component(kind: str) -> AfterValidator:
    """Checks a reference to a component of `kind` against the registry in the validation context."""
    def check(ref: ComponentRef, info: ValidationInfo) -> ComponentRef:
        if (checker := (info.context or {}).get(COMPONENT_CHECKER)) is not None:
            ref._parsed = checker(kind, ref.name, ref.params, ())
        return ref

    return AfterValidator(check)


class DeduplicateConfig(BaseModel):
    """Drop duplicate rows before the split, so that copies cannot straddle train and test."""

    model_config = _STRICT
    method: Literal["none", "exact", "near"] = Field("none", description="none; exact (same content hash); "
                                                                         "near (closer than threshold)")
    threshold: float = Field(0.05, gt=0, strict=True, description="near: distance under which two rows are "
                                                                  "duplicates (root-mean-square difference per value)")

    @model_validator(mode="before")
    @classmethod
    def _from_method(cls, value: Any) -> Any:
        return {"method": value} if isinstance(value, str) else value


class SourceConfig(ComponentRef):
    """Where the data comes from."""

    name: str = Field(min_length=1, description="the source's name (see `setforge plugins list`)")
    params: dict[str, Any] = Field(default_factory=dict, description="the source's params; relative paths "
                                                                     "resolve against the run file's folder")
    on_invalid: Literal["error", "drop"] = Field("error", description="invalid rows (NaN, missing values, unknown "
                                                                      "labels, unreadable files): stop, or drop and count")
    deduplicate: DeduplicateConfig = Field(default_factory=DeduplicateConfig,
                                           description="none, exact or near (with a threshold), or a mapping "
                                                       "{method, threshold}")
    stream: StrictBool | Literal["auto"] = Field("auto", description="read, step and write batch by batch "
                                           "(data larger than memory); auto: when the rows would take more than "
                                           "stream_above bytes")
    stream_above: int = Field(4 * 2**30, ge=0, strict=True, description="stream: auto streams a source whose rows "
                                                                        "would take more bytes than this as float32")


class SplitConfig(BaseModel):
    """How the real data is split; ignored parts when the source brings its own split."""

    model_config = _STRICT
    test: float = Field(0.2, ge=0.0, lt=1.0, strict=True, description="share of all rows held out as the real "
                                                                      "test split")
    val: float = Field(0.1, ge=0.0, lt=1.0, strict=True, description="share of all rows held out for validation "
                                                                     "(test + val < 1; carved from a source's own "
                                                                     "train part: a share of its rows)")
    stratify: bool = Field(True, strict=True, description="keep class shares equal across splits")
    group_by: bool = Field(False, strict=True, description="keep each group (the source's groups) within one split")
    drop_leaked: bool = Field(False, strict=True, description="drop training rows that duplicate a test row, "
                                                              "before any step")

    @model_validator(mode="after")
    def _shares(self) -> "SplitConfig":
        if self.test + self.val >= 1.0:
            raise PydanticCustomError(_PLACED_ERROR, "test + val must be < 1 (shares of the whole), got "
                                                   f"{self.test} + {self.val} = {self.test + self.val:g}",
                                      {"setforge_at": ""})
        return self


class GuardConfig(BaseModel):
    """The host's guard on a generate step: after sampling, a classifier trained on the step input's
    real rows scores the generated rows (the share assigned to their requested class) and the real
    val rows (recall, each class weighted by its share of the generated rows; classes without val
    rows are left out of both, with a warning); the step fails when the first is below
    ``min_cas_ratio`` times the second."""

    model_config = _STRICT
    on_fail: Literal["fail", "warn", "off"] = Field("fail", description="fail: a DataError (exit 3); warn: go on "
                                                                        "with a warning; off: no check")
    min_cas_ratio: float = Field(0.7, ge=0.0, le=1.0, description="least generated-rows agreement, as a share of "
                                                                   "the real val rows' recall")


class StepConfig(BaseModel):
    """One pipeline step: exactly one of ``augment``, ``resample``, ``generate``."""

    model_config = _STRICT
    _parsed: BaseModel | None = PrivateAttr(None)  # the step's one component's params, once checked
    augment: str | list[Annotated[ComponentRef, _component("augment")]] | None = Field(None, description="an augmenter, or a chain of them "
                                                                       "([NAME, {name: NAME, params: {...}}, ...])")
    resample: str | None = Field(None, description="a resampler")
    generate: str | None = Field(None, description="a generator")
    params: dict[str, Any] = Field(default_factory=dict, description="params of the step's component "
                                                                     "(a chain's ops take their own)")
    # augment
    copies: int = Field(1, ge=0, le=1000, strict=True, description="augmented copies of each selected row "
                                                                   "(the originals stay)")
    minority: bool = Field(False, strict=True, description="select every class below the largest")
    # augment and generate: which classes
    classes: list[StrictStr | StrictInt] | None = Field(None, description="only these classes (names or ids)")
    # augment and generate: how many rows (one of them; generate defaults to target: balance)
    target: Literal["balance"] | None = Field(None, description="fill every class up to the largest "
                                                                "(generate's default amount)")
    per_class: int | None = Field(None, ge=0, strict=True, description="final total rows per class")
    multiply: float | None = Field(None, gt=0, strict=True, description="K times the real rows of each class")
    fit_on: Literal["real", "all"] = Field("real", description="train on the step input's real rows only, or on all")
    guard: GuardConfig | Literal["fail", "warn", "off"] = Field(
        "fail", description="check the generated rows against real ones after sampling: fail (exit 3), "
                            "warn (go on, say so in the summary and report), off, or {on_fail, min_cas_ratio}")

    @field_validator("guard", mode="before")
    @classmethod
    def _guard_word(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false (and `on` as true)
        if value is False:
            return "off"
        if value is True:
            return "fail"
        return value

    @property
    def guard_config(self) -> "GuardConfig":
        """``guard`` as a `GuardConfig` (a bare word sets ``on_fail``)."""
        if isinstance(self.guard, GuardConfig):
            return self.guard
        return GuardConfig(on_fail=self.guard)

    @model_validator(mode="wrap")
    @classmethod
    def _one_kind(cls, data: Any, handler: Any, info: ValidationInfo) -> "StepConfig":
        # The step's own fields, its host keys (`steps.step_problems`) and its component's params
        # are checked side by side, so that every problem of a step shows at once.
        if not isinstance(data, dict):
            return handler(data)
        step, found, parsed = None, [], None
        try:
            step = handler(data)
        except ValidationError as error:
            found = error.errors(include_url=False)
        named = [k for k in STEP_KINDS if data.get(k) is not None]
        params, chain = data.get("params", {}), data["augment"] if isinstance(data.get("augment"), list) else None
        if (problem := step_problems(named, {k: data[k] for k in ALL_HOST_KEYS if k in data}, chain, params or {})):
            found.append({"type": _step_error(problem[0], *problem[1]), "loc": (), "input": data})
        checker = (info.context or {}).get(COMPONENT_CHECKER)  # (none: read without a registry)
        if checker and len(named) == 1 and isinstance(data[named[0]], str) and isinstance(params, dict) and \
                not any(e["loc"][:1] in (("params",), (named[0],)) for e in found):
            try:
                parsed = checker(named[0], data[named[0]], params, (named[0],))
            except ValidationError as more:
                found += more.errors(include_url=False)
        if found:
            raise ValidationError.from_exception_data("run file", [
                e if isinstance(e["type"], PydanticCustomError) else
                {"type": PydanticCustomError(e["type"], e["msg"], e.get("ctx")), "loc": e["loc"], "input": e["input"]}
                for e in found]) from None
        if named == ["generate"] and all(getattr(step, k) is None for k in AMOUNT_KEYS):
            step.target = "balance"
        step._parsed = parsed
        return step

    @property
    def kind(self) -> str:
        """``augment``, ``resample`` or ``generate``."""
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)

    def component_refs(self) -> list[ComponentRef]:
        """The step's component(s) with their params (several for a chain)."""
        value = getattr(self, self.kind)
        if isinstance(value, list):
            return list(value)
        ref = ComponentRef(name=value, params=self.params)
        ref._parsed = self._parsed
        return [ref]

    @property
    def is_chain(self) -> bool:
        return isinstance(self.augment, list)


def _step_error(message: str, *keys: str) -> PydanticCustomError:
    # The message is not a template: pydantic only substitutes the context's keys.
    return PydanticCustomError(_PLACED_ERROR, message, {"setforge_at": ",".join(keys)})


class OutputConfig(BaseModel):
    """Where and how the run folder is written."""

    model_config = _STRICT
    dir: str = Field("runs/run", min_length=1, description="the run folder (relative to the current folder, "
                                                           "not to the run file)")
    format: str = Field("npz", min_length=1, description="how the data files are written: npz, or a format a "
                                                         "plugin adds (see docs/run-files.md)")
    force: bool = Field(False, strict=True, description="replace an existing run folder (like --force)")
    shard_rows: int = Field(50_000, ge=1, strict=True, description="rows per data shard (npz, webdataset)")

    @field_validator("dir", mode="before")
    @classmethod
    def _path_is_str(cls, value: Any) -> Any:
        return str(value) if isinstance(value, Path) else value


class RunConfig(BaseModel):
    """A whole run file."""

    model_config = _STRICT
    seed: int = Field(0, ge=0, lt=2**63, description="the run seed; every step's randomness derives from it")
    device: str = Field("auto", description="auto (CUDA when available), cpu, cuda, cuda:N or mps")
    batch_size: int = Field(4096, ge=1, strict=True, description="rows per batch for streaming work "
                                                                 "(augment, sampling)")
    source: Annotated[SourceConfig, _component("source")] = Field(description="the dataset source: NAME or {name, params, ...} (required)")
    split: SplitConfig = Field(default_factory=SplitConfig, description="how the real data is split")
    preprocess: list[Annotated[ComponentRef, _component("preprocess")]] = Field(default_factory=list, description="preprocessors, fitted on train only, "
                                                                             "applied to every split")
    pipeline: list[StepConfig] = Field(default_factory=list, description="steps applied to the training split, "
                                                                         "in order")
    evaluate: list[Annotated[ComponentRef, _component("evaluate")]] = Field(default_factory=list, description="evaluators run at the end")
    observe: list[Annotated[ComponentRef, _component("observe")]] = Field(default_factory=list, description="observers that watch the run's events "
                                                                          "(setforge plugins lists them)")
    output: OutputConfig = Field(default_factory=OutputConfig, description="where and how the run folder is written")
    plugins: list[str] = Field(default_factory=list, description="local plugins: module names or .py files "
                                                                 "(relative to the run file)")
    plugins_allow: list[str] | None = Field(None, description="when given, only these third-party entry points load")
    plugins_deny: list[str] = Field(default_factory=list, description="these entry points do not load")

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _file: Path | None = PrivateAttr(None)
    _overrides: dict[str, str] = PrivateAttr(default_factory=dict)  # place -> the --set that set it

    @property
    def base_dir(self) -> Path:
        """The run file's folder: relative paths inside the run file resolve against it."""
        return self._base_dir

    @field_validator("seed", mode="before")
    @classmethod
    def _seed_is_int(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer in [0, 2^63)")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.fullmatch(value):
            raise ValueError("must be auto, cpu, cuda, cuda:N (N a GPU index) or mps")
        return value

    @field_validator("preprocess", "evaluate", "pipeline", "plugins", "plugins_deny", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


# ========================================================================= introspection
def _unwrap(annotation: Any) -> list[Any]:
    """The alternatives of a (possibly Optional/Union/Annotated) annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [alt for arg in typing.get_args(annotation) for alt in _unwrap(arg)]
    return [annotation]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for alternative in _unwrap(annotation):
        if inspect.isclass(alternative) and issubclass(alternative, BaseModel):
            return alternative
    return None


def _child_annotation(annotation: Any, segment: str | int, value: Any = None) -> tuple[bool, Any]:
    """``(valid, annotation of annotation[segment])``; `Any` below free-form mappings (params)."""
    if annotation is Any:
        return True, Any
    for alternative in _unwrap(annotation):
        origin = typing.get_origin(alternative)
        if isinstance(segment, int):
            if origin in (list, tuple) and not isinstance(value, str):
                return True, typing.get_args(alternative)[0]
            continue
        if inspect.isclass(alternative) and issubclass(alternative, BaseModel):
            if segment in alternative.model_fields:
                return True, alternative.model_fields[segment].annotation
        elif origin is dict or alternative is dict:
            return True, Any
    return False, None


def _annotation_at(loc: Sequence[str | int]) -> Any:
    """The annotation at `loc` inside a run file (None where the path leaves the models)."""
    annotation: Any = RunConfig
    for segment in loc:
        valid, annotation = _child_annotation(annotation, segment)
        if not valid:
            return None
    return annotation


# Shorthands a mapping can be written as, by model: source: NAME, deduplicate: METHOD.
_SHORTHAND_KEY = {ComponentRef: "name", SourceConfig: "name", DeduplicateConfig: "method"}


def _expand_shorthand(value: Any, annotation: Any) -> Any:
    model = _model_in(annotation)
    if isinstance(value, str) and model in _SHORTHAND_KEY:
        return {_SHORTHAND_KEY[model]: value}
    return value



def type_words(annotation: Any, quote: str = "`") -> str:
    """A field's type in the words of the reference docs and ``plugins show`` (``integer or `auto```),
    the accepted literal values in `quote`: the one renderer of param and key types."""
    parts = []
    for alternative in _unwrap(annotation):
        origin = typing.get_origin(alternative)
        if alternative is type(None):
            parts.append("null")
        elif origin is Literal:
            parts.extend(f"{quote}{value}{quote}" for value in typing.get_args(alternative))
        elif origin in (list, tuple):
            inner = type_words(typing.get_args(alternative)[0], quote)
            parts.append(f"list of ({inner})" if " or " in inner else f"list of {inner}s")
        elif origin is dict or alternative is dict:
            parts.append("mapping")
        elif alternative in (ComponentRef, SourceConfig):
            parts.append("component")
        elif alternative is StepConfig:
            parts.append("step")
        elif alternative is DeduplicateConfig:
            parts.extend([*(f"{quote}{v}{quote}" for v in ("none", "exact", "near")), "mapping"])
        elif inspect.isclass(alternative) and issubclass(alternative, BaseModel):
            parts.append("mapping")
        else:
            parts.append({bool: "boolean", int: "integer", float: "number", str: "string",
                          Any: "any"}.get(alternative, getattr(alternative, "__name__", str(alternative))))
    return " or ".join(dict.fromkeys(parts))
