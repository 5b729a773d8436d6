"""Config checks shared by the training loop and the CLI: errors, finite numbers, listing.

``ConfigError`` is the one exception a bad config (or a workdir that does not
match it) raises; the CLI prints its message as one line.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import ml_collections


class ConfigError(ValueError):
  """The config, or its match with a workdir's checkpoint, is invalid."""


def flat_fields(config: ml_collections.ConfigDict | Mapping[str, Any],
                prefix: str = "") -> Iterator[tuple[str, Any]]:
  """Every leaf field of ``config`` as ``(dotted name, value)``, nested dicts flattened."""
  items = config.items() if isinstance(config, Mapping) else config.to_dict().items()
  for name, value in sorted(items):
    if isinstance(value, (Mapping, ml_collections.ConfigDict)):
      yield from flat_fields(value, f"{prefix}{name}.")
    else:
      yield f"{prefix}{name}", value


def check_finite(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first float field (or tuple element) that is NaN or inf."""
  for name, value in flat_fields(config):
    values = value if isinstance(value, (tuple, list)) else (value,)
    for i, v in enumerate(values):
      if isinstance(v, float) and not math.isfinite(v):
        where = f"config.{name}" + (f"[{i}]" if values is value else "")
        raise ConfigError(f"{where} must be a finite number, got {v!r}")


def describe(config: ml_collections.ConfigDict) -> str:
  """One ``name = value  (type)`` line per field: what ``--config.<name>=...`` can set."""
  rows = list(flat_fields(config))
  width = max(len(name) for name, _ in rows)
  return "\n".join(f"{name:<{width}} = {value!r}  ({type(value).__name__})"
                   for name, value in rows)

