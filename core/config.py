"""The run file: pydantic models, loading from YAML/TOML/JSON, and validation with places.

Every problem is reported with its place (``pipeline[2].params.epochs``), what was given and what
is accepted, all at once, before any work starts (`ConfigError`, exit 2).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator


__all__ = ["ComponentRef", "SourceConfig", "DeduplicateConfig", "SplitConfig", "StepConfig", "OutputConfig",
           "RunConfig", "STEP_KINDS"]

STEP_KINDS = ("augment", "resample", "generate")
_STRICT = ConfigDict(extra="forbid", validate_default=True)
_AUGMENT_KEYS = ("copies", "minority")
_GENERATE_KEYS = ("target", "per_class", "multiply", "fit_on")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value}")
    return value


class ComponentRef(BaseModel):
    """A component by name, with its params: ``NAME`` or ``{name: NAME, params: {...}}``."""

    model_config = _STRICT
    name: str = Field(min_length=1, description="the component's name (see `setforge plugins list`)")
    params: dict[str, Any] = Field(default_factory=dict, description="the component's params "
                                                                     "(see `setforge plugins show KIND/NAME`)")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class DeduplicateConfig(BaseModel):
    """Drop duplicate rows before the split, so that copies cannot straddle train and test."""

    model_config = _STRICT
    method: Literal["none", "exact", "near"] = Field("none", description="none; exact (same content hash); "
                                                                         "near (closer than threshold)")
    threshold: float = Field(0.05, gt=0, description="near: distance under which two rows are duplicates "
                                                     "(root-mean-square difference per value)")

    @model_validator(mode="before")
    @classmethod
    def _from_method(cls, value: Any) -> Any:
        return {"method": value} if isinstance(value, str) else value


class SourceConfig(ComponentRef):
    """Where the data comes from."""

    on_invalid: Literal["error", "drop"] = Field("error", description="invalid rows (NaN, missing values, unknown "
                                                                      "labels, unreadable files): stop, or drop and count")
    deduplicate: DeduplicateConfig = Field(default_factory=DeduplicateConfig,
                                           description="none | exact | near (with a threshold)")
    stream: bool = Field(False, description="read in batches instead of all at once (for data larger than memory)")


class SplitConfig(BaseModel):
    """How the real data is split; ignored parts when the source brings its own split."""

    model_config = _STRICT
    test: float = Field(0.2, ge=0.0, lt=1.0, description="share of all rows held out as the real test split")
    val: float = Field(0.1, ge=0.0, lt=1.0, description="share of all rows held out for validation")
    stratify: bool = Field(True, description="keep class shares equal across splits")
    group_by: bool = Field(False, description="keep each group (the source's groups) within one split")
    drop_leaked: bool = Field(False, description="drop training rows that duplicate a test row, before any step")

    @model_validator(mode="after")
    def _shares(self) -> "SplitConfig":
        if self.test + self.val >= 1.0:
            raise ValueError(f"test + val must be < 1 (shares of the whole), got {self.test} + {self.val}")
        return self


class StepConfig(BaseModel):
    """One pipeline step: exactly one of ``augment``, ``resample``, ``generate``."""

    model_config = _STRICT
    augment: str | list[ComponentRef] | None = Field(None, description="an augmenter, or a chain of them")
    resample: str | None = Field(None, description="a resampler")
    generate: str | None = Field(None, description="a generator")
    params: dict[str, Any] = Field(default_factory=dict, description="params of the step's component "
                                                                     "(for a chain: give each op its own)")
    # augment
    copies: int = Field(1, ge=0, le=1000, description="augment: augmented copies of each selected row")
    minority: bool = Field(False, description="augment: select every class below the largest")
    # augment and generate
    classes: list[str | int] | None = Field(None, description="augment/generate: only these classes (names or ids)")
    # generate
    target: Literal["balance"] | None = Field(None, description="generate: fill every class up to the largest")
    per_class: int | None = Field(None, ge=0, description="generate: final total rows per class")
    multiply: float | None = Field(None, gt=0, description="generate: K times the real rows of each class")
    fit_on: Literal["real", "all"] = Field("real", description="generate: train on real rows only, or on all")

    _check_multiply = field_validator("multiply")(classmethod(lambda cls, v: _finite(v)))

    @model_validator(mode="after")
    def _one_kind(self) -> "StepConfig":
        named = [k for k in STEP_KINDS if getattr(self, k) is not None]
        if len(named) != 1:
            raise ValueError(f"a step names exactly one of augment, resample, generate; got "
                             f"{', '.join(named) if named else 'none'}")
        kind = named[0]
        misplaced = [k for k in (_AUGMENT_KEYS if kind != "augment" else ()) + (_GENERATE_KEYS if kind != "generate" else ())
                     if k in self.model_fields_set]
        if kind == "resample" and "classes" in self.model_fields_set:
            misplaced.append("classes")
        if misplaced:
            raise ValueError(f"{', '.join(misplaced)} do not apply to a {kind} step")
        if kind == "generate":
            amounts = [k for k in ("target", "per_class", "multiply") if getattr(self, k) is not None]
            if len(amounts) > 1:
                raise ValueError(f"a generate step takes one of target, per_class, multiply; got {', '.join(amounts)}")
            if not amounts:
                self.target = "balance"
        if kind == "augment" and self.minority and self.classes is not None:
            raise ValueError("an augment step takes minority or classes, not both")
        if kind == "augment" and isinstance(self.augment, list):
            if not self.augment:
                raise ValueError("an augment chain needs at least one augmenter")
            if self.params:
                raise ValueError("a chain's ops take their own params: augment: [{name: NAME, params: {...}}, ...]")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)

    def component_refs(self) -> list[ComponentRef]:
        """The step's component(s) with their params (several for a chain)."""
        value = getattr(self, self.kind)
        if isinstance(value, list):
            return list(value)
        return [ComponentRef(name=value, params=self.params)]

    @property
    def is_chain(self) -> bool:
        return isinstance(self.augment, list)


class OutputConfig(BaseModel):
    """Where and how the run folder is written."""

    model_config = _STRICT
    dir: str = Field("runs/run", min_length=1, description="the run folder (relative to the current folder)")
    format: Literal["npz", "image-folder", "csv"] = Field("npz", description="how the data files are written")
    force: bool = Field(False, description="replace an existing run folder")
    shard_rows: int = Field(50_000, ge=1, description="rows per train-NNNNN.npz shard")


class RunConfig(BaseModel):
    """A whole run file."""

    model_config = _STRICT
    seed: int = Field(0, ge=0, lt=2**63, description="the run seed; every step's randomness derives from it")
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")] = Field(
        "auto", description="auto | cpu | cuda | cuda:N")
    batch_size: int = Field(4096, ge=1, description="rows per batch for streaming work (augment, sampling)")
    source: SourceConfig = Field(description="the dataset source")
    split: SplitConfig = Field(default_factory=SplitConfig)
    preprocess: list[ComponentRef] = Field(default_factory=list, description="preprocessors, fitted on train only")
    pipeline: list[StepConfig] = Field(default_factory=list, description="steps applied to the training split, in order")
    evaluate: list[ComponentRef] = Field(default_factory=list, description="evaluators run at the end")
    output: OutputConfig = Field(default_factory=OutputConfig)
    plugins: list[str] = Field(default_factory=list, description="local plugins: module names or .py files "
                                                                 "(relative to the run file)")
    plugins_allow: list[str] | None = Field(None, description="only these third-party entry points load")
    plugins_deny: list[str] = Field(default_factory=list, description="these entry points do not load")

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @property
    def base_dir(self) -> Path:
        """The run file's folder: relative paths inside the run file resolve against it."""
        return self._base_dir

    @field_validator("seed", mode="before")
    @classmethod
    def _seed_is_int(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, float)):
            raise ValueError(f"seed must be an integer in [0, 2**63), got {value!r}")
        return value

    @field_validator("preprocess", "evaluate", "pipeline", "plugins", "plugins_deny", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value
