"""Three seconds-long parity trials (tests): two taus, two seeds."""

from typing import Any

CONFIG = "tasks/configs/parity.py:tiny"


def get_sweep() -> list[dict[str, Any]]:
  return [{"tau": 0.01, "seed": 0}, {"tau": 0.001, "seed": 0}, {"tau": 0.01, "seed": 1}]
