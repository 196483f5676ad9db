"""`Torchvision`: any ``torchvision.transforms.v2`` transform by name, applied row by row (the slow path).

The escape hatch to everything torchvision has (elastic warps, JPEG, perspective, AugMix on
uint8, ...). torchvision draws one parameter set per call, so the transform is called once per row.
Its randomness still comes from the step's generator: each row draws a seed, and the call runs
under ``torch.random.fork_rng`` seeded with it, so a run replays and the global RNG is left as it
was. Params are checked at validate: the class must exist in ``transforms.v2`` (a bad name lists
the classes), its arguments must bind to the class's signature, and the transform must build.
"""

from __future__ import annotations

import enum
import inspect
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from setforge.chain import ForkSafeLock
from setforge.components import Augmenter
from setforge.errors import DataError

__all__ = ["Torchvision"]


#: torch's global generator is one per process: rows seeded on it in several threads at once (a
#: chain's worker threads) would take each other's draws, so one thread at a time seeds and draws.
_GLOBAL_RNG = ForkSafeLock()


def transform_classes() -> dict[str, type]:
    """Name -> class of every public transform of ``torchvision.transforms.v2``."""
    import torchvision.transforms.v2 as T

    return {name: obj for name, obj in vars(T).items() if not name.startswith("_") and isinstance(obj, type)
            and issubclass(obj, T.Transform) and obj is not T.Transform}


def _coerce(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Strings for enum arguments (``policy: cifar10``, ``interpolation: bilinear``) as the enum."""
    signature = inspect.signature(cls)
    out = dict(kwargs)
    for key, value in kwargs.items():
        default = signature.parameters[key].default if key in signature.parameters else None
        if isinstance(default, enum.Enum) and isinstance(value, str):
            kind = type(default)
            out[key] = kind[value.upper()] if value.upper() in kind.__members__ else kind(value)
    return out


def _call_error(transform: Any, dtype: str) -> str | None:
    """What `transform` raises on a 3x64x64 image of `dtype`, and again on 3x512x512 (for
    transforms that need a larger image: a crop size); None when it runs on either. torchvision
    checks some values only when called (an interpolation mode's name, JPEG's dtype)."""
    failure = None
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        for size in (64, 512):
            image = torch.rand(3, size, size, generator=torch.Generator().manual_seed(0))
            try:
                transform(image.mul(255).to(torch.uint8) if dtype == "uint8" else image)
                return None
            except Exception as error:  # noqa: BLE001 - whatever torchvision says
                failure = f"{type(error).__name__}: {error}"
    return failure


class Torchvision(Augmenter):
    """Any torchvision.transforms.v2 transform by name and arguments, applied per row (slow path).

    ``transform`` names the class (``RandomPerspective``, ``ElasticTransform``, ``JPEG``...),
    ``kwargs`` its arguments as in Python. The transform runs once per row (torchvision shares one
    draw per call), seeded per row from the step's generator. ``dtype: uint8`` hands it 8-bit
    images (for transforms that take only those) and scales back. It must keep the image's shape
    and [0, 1] range.
    """

    name = "torchvision"
    testing_params = {"transform": "RandomRotation", "kwargs": {"degrees": 20}}

    class Params(Augmenter.Params):
        """The transform and its arguments."""

        transform: str = Field("RandomRotation", description="a class of torchvision.transforms.v2")
        kwargs: dict[str, Any] = Field(default_factory=lambda: {"degrees": 10.0},
                                       description="its arguments, checked against its signature (default: "
                                                   "degrees 10 for the default RandomRotation, none for another)")
        dtype: Literal["float", "uint8"] = Field("float", description="hand the transform float images in [0, 1] "
                                                 "or uint8 images in 0..255")

        @model_validator(mode="before")
        @classmethod
        def _kwargs_of_the_named_transform(cls, data: Any) -> Any:
            # the default kwargs are the default RandomRotation's: another transform starts from none
            if isinstance(data, dict) and data.get("transform", "RandomRotation") != "RandomRotation" \
                    and "kwargs" not in data:
                return {**data, "kwargs": {}}
            return data

        @model_validator(mode="after")
        def _builds(self):
            if not self.model_fields_set:
                # the defaults, which a test builds: checking them here would import torchvision
                # (1.5 s, most of it torch._dynamo) whenever a registry loads its plugins
                return self
            classes = transform_classes()
            if self.transform not in classes:
                raise ValueError(f"transform {self.transform!r} is not a torchvision.transforms.v2 class; "
                                 f"one of: {', '.join(sorted(classes))}")
            cls = classes[self.transform]
            try:
                inspect.signature(cls).bind(**self.kwargs)
            except TypeError as error:
                params = ", ".join(str(p) for p in inspect.signature(cls).parameters.values())
                raise ValueError(f"kwargs do not fit {self.transform}({params}): {error}") from None
            try:
                transform = cls(**_coerce(cls, self.kwargs))
            except Exception as error:  # noqa: BLE001 - torchvision's own check of the values
                raise ValueError(f"{self.transform}(**kwargs) refused the arguments: {error}") from None
            failure = _call_error(transform, self.dtype)
            if failure is not None:
                raise ValueError(f"{self.transform}(**kwargs) fails on a test image ({self.dtype}): {failure}"
                                 + ("; it may need dtype: uint8" if self.dtype == "float" and "uint8" in failure
                                    else ""))
            return self

    def __init__(self, params=None):
        super().__init__(params)
        cls = transform_classes()[self.params.transform]
        self.transform = cls(**_coerce(cls, self.params.kwargs))

    def _shape_error(self, shape: tuple[int, ...], out: Any) -> str:
        """Why the transform's output `out` of a `shape` image is refused: what changed (the
        channel count, the size) and the argument that would keep it, where the transform has one."""
        name = self.params.transform
        head = f"augment 'torchvision': {name} turned a {shape} image into"
        if not isinstance(out, torch.Tensor) or out.dim() != len(shape):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            return f"{head} {got}; it must return an image of the same shape"
        accepts = inspect.signature(type(self.transform)).parameters
        changes = []
        if out.shape[0] != shape[0]:
            keep = (f" (kwargs: {{num_output_channels: {shape[0]}}} keeps them)"
                    if "num_output_channels" in accepts and shape[0] in (1, 3) else "")
            changes.append(f"the channels from {shape[0]} to {out.shape[0]}{keep}")
        if tuple(out.shape[1:]) != shape[1:]:
            size = "x".join(map(str, shape[1:]))
            keep = f" (kwargs: {{size: {list(shape[1:])}}} keeps it)" if "size" in accepts else ""
            changes.append(f"the size from {size} to {'x'.join(map(str, out.shape[1:]))}{keep}")
        return f"{head} {tuple(out.shape)}: it changed {' and '.join(changes)}; an augmenter must keep the image's shape"

    def _make_params(self, x, y, generator):
        return {"seed": torch.randint(0, 2**62, (x.shape[0],), generator=generator, device=x.device)}

    def _transform(self, x, y, params):
        seeds = params["seed"].tolist()
        rows = []
        with _GLOBAL_RNG, torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            for row, seed in zip(x, seeds):
                torch.manual_seed(seed)
                if self.params.dtype == "uint8":
                    out = self.transform(row.mul(255.0).round_().to(torch.uint8)).to(x.dtype).div_(255.0)
                else:
                    out = self.transform(row)
                if not isinstance(out, torch.Tensor) or out.shape != row.shape:
                    raise DataError(self._shape_error(tuple(row.shape), out))
                rows.append(out.to(x.dtype))
        out = torch.stack(rows) if rows else x.clone()
        if out.numel() and (float(out.min()) < 0.0 or float(out.max()) > 1.0):
            raise DataError(f"augment 'torchvision': {self.params.transform} left [0, 1] "
                            f"([{float(out.min()):.3g}, {float(out.max()):.3g}]); images stay in [0, 1] "
                            f"(leave normalisation to the model)")
        return out
