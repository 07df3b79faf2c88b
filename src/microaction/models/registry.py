"""A small model registry: ``create_model(name, **kwargs)`` and ``list_models()``.

Only models are registered; everything else in the package is plain Python. Every registered
model takes the shared keyword arguments ``num_classes``, ``num_body`` (0: no body head),
``regions`` (names of the region streams), ``region_dim`` and ``global_dim``, plus its own.
A registered ``tiny`` preset gives small sizes for tests and the CPU demo. The built-in families
are registered by the package's ``__init__``, which Python runs before this module whatever the
import path, so the registry never imports the families (they import it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

__all__ = ["ModelEntry", "UnknownModelError", "create_model", "list_models", "model_entry", "register_model"]

M = TypeVar("M", bound=type[nn.Module])


class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; this one is a sentence
        return str(self.args[0])


@dataclass(frozen=True)
class ModelEntry:
    name: str
    cls: type[nn.Module]
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: str = ""


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, presets: dict[str, dict[str, Any]] | None = None) -> Callable[[M], M]:
    """Class decorator adding a model under ``name`` (with optional named size presets)."""

    def deco(cls: M) -> M:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        doc = (cls.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelEntry(name, cls, dict(presets or {}), doc[0] if doc else "")
        return cls

    return deco


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}; registered models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(name: str, *, preset: str | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``preset`` kwargs first, explicit ``kwargs`` override them."""
    entry = model_entry(name)
    args: dict[str, Any] = {}
    if preset is not None:
        if preset not in entry.presets:
            raise ValueError(f"model {name!r} has no preset {preset!r}; presets: {sorted(entry.presets)}")
        args.update(entry.presets[preset])
    args.update(kwargs)
    try:
        return entry.cls(**args)
    except TypeError as e:
        raise TypeError(f"create_model({name!r}): {e}") from None
