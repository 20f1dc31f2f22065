"""Task families as data: a preset name, or a JSON object of fields over a preset.

Shared by the arm's and the I-maze's families (``ArmFamily``, ``IMazeFamily``): a
dataclass with a ``preset(name)`` classmethod and validation in ``__post_init__``.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable


def family_from_spec(cls, spec: Any, label: str, default: str,
                     convert: Callable[[str, Any], Any] = lambda name, value: value):
    """``spec``: a preset name, a dict (``{"preset": name, field: value, ...}``: fields
    override the preset, ``default`` when it names none), an instance, or None (``cls()``).
    ``convert(field, value)`` turns a JSON value into the field's type (or refuses it).
    An unknown preset or field is a ValueError naming the ``label``."""
    if spec is None or isinstance(spec, cls):
        return spec or cls()
    if isinstance(spec, str):
        return cls.preset(spec)
    if not isinstance(spec, dict):
        raise ValueError(f"an {label} is a preset name or a JSON object, not {spec!r}")
    spec = dict(spec)
    base = cls.preset(spec.pop("preset", default))
    unknown = set(spec) - set(cls.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown {label} setting(s) {sorted(unknown)}; "
                         f"known: {', '.join(cls.__dataclass_fields__)}")
    return replace(base, **{name: convert(name, value) for name, value in spec.items()})
