r"""Fetches the Wikipedia language model's data: enwik8 from the Hutter prize page.

  python -m launch.fetch_data --dest=../shared/data
  python -m launch.fetch_data --dest=DIR --url=file:///mirror/enwik8.zip

Downloads ``enwik8.zip`` into ``--dest`` (unless it is there), extracts
``enwik8``, checks its size and SHA-1 against the published ones, and writes
``enwik6`` (its first 10^6 bytes) beside it. ``--dest=../shared/data`` is
where ``tasks/configs/text.py``'s ``default`` variant looks for enwik6;
elsewhere, give ``--config.task_options.path=DIR/enwik6`` (or ``DIR/enwik8``
for ``paper``).
"""

import os
import sys

from absl import app, flags

from tasks.data import text

_DEST = flags.DEFINE_string("dest", None, "The directory for enwik8.zip, enwik8 and enwik6.",
                            required=True)
_URL = flags.DEFINE_string("url", text.ENWIK8_URL, "Where enwik8.zip is (file:// URLs too).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    path = text.fetch_enwik8(_DEST.value, _URL.value)
  except (OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    raise SystemExit(1) from None
  print(f"{path}: size and SHA-1 checked; {os.path.join(os.path.dirname(path), text.ENWIK6_NAME)}: "
        "its first 10^6 bytes")


if __name__ == "__main__":
  app.run(main)
