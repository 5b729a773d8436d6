r"""Where a trained language model ponders: plot, coloured HTML and tables.

  python -m launch.analyze_ponder --workdir=runs/text_act
  python -m launch.analyze_ponder --workdir=runs/text_act --text_file=page.txt \
      --out_dir=runs/text_act/page

Reads the run's latest checkpoint (or ``--step``'s) and a text (by default
the whole held-out split of the run's byte file, or ``--offset``/``--length``
of a split, or a file), runs the model over it in training-length windows with
the state reset per window, and writes to ``--out_dir`` (default
``<workdir>/analysis``):

* ``ponder.png``: ponder, loss and entropy along the first ``--show_chars``
  characters, characters on the axis (the paper's Figs. 23/24);
* ``ponder.html``: those characters coloured by ponder, with the tables;
* ``analysis.json``: mean ponder, N, loss and entropy by character class, and
  precision / recall / F1 of the peaks of ponder, loss and entropy against
  word boundaries (spaces), over the whole text.
"""

import json
import os

import numpy as np
from absl import app, flags

from tasks import config_checks, text_analysis
from tasks.checkpoints import load_trained_model
from tasks.data import text

_WORKDIR = flags.DEFINE_string("workdir", None, "A text-task training run's workdir.")
_TEXT_FILE = flags.DEFINE_string("text_file", None, "Analyse this file instead of a split.")
_SPLIT = flags.DEFINE_enum("split", "valid", text.SPLITS, "Split of the run's byte file.")
_OFFSET = flags.DEFINE_integer("offset", 0, "First byte of the text within the split or file.")
_LENGTH = flags.DEFINE_integer("length", 0, "Bytes to analyse (0: to the end).")
_SHOW_CHARS = flags.DEFINE_integer("show_chars", 400, "Characters in the plot and the HTML.")
_STEP = flags.DEFINE_integer("step", 0, "The checkpoint's step (0: the latest).")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Output directory (default <workdir>/analysis).")
flags.mark_flag_as_required("workdir")


def _text(config) -> np.ndarray:
  if _TEXT_FILE.value:
    data = text.load_bytes(_TEXT_FILE.value, check_sha1=False)
  else:
    data = text.split_bytes(text.load_bytes(config.task_options.path, check_sha1=False),
                            _SPLIT.value)
  stop = _OFFSET.value + _LENGTH.value if _LENGTH.value else len(data)
  if not 0 <= _OFFSET.value < len(data) or stop > len(data) or stop - _OFFSET.value < 2:
    raise app.UsageError(f"offset {_OFFSET.value} and length {_LENGTH.value} do not select "
                         f"at least 2 of the text's {len(data)} bytes")
  return np.asarray(data[_OFFSET.value:stop])


def _markdown(title: str, table) -> str:
  columns = list(next(iter(table.values())))
  lines = [f"{title}", "| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
  for name, row in table.items():
    cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    model, config, step = load_trained_model(_WORKDIR.value, step=_STEP.value)
  except config_checks.ConfigError as e:
    raise app.UsageError(str(e)) from e
  if config.task != "text":
    raise app.UsageError(f"{_WORKDIR.value!r} is a {config.task!r} run, not a text run")
  byte_values = _text(config)
  signals = text_analysis.character_signals(model, byte_values, config.task_options.window)
  tables = {"by character class": text_analysis.class_table(signals),
            "by position in the window": text_analysis.window_position_table(
                signals, config.task_options.window),
            "word boundaries (spaces) found by peaks": text_analysis.boundary_table(signals)}
  out_dir = _OUT_DIR.value or os.path.join(_WORKDIR.value, "analysis")
  os.makedirs(out_dir, exist_ok=True)
  shown = text_analysis.CharacterSignals(*(x[:_SHOW_CHARS.value] for x in signals))
  title = (f"{config.task} {config.mode} tau={config.tau:g} at step {step}: "
           f"{len(signals.characters)} characters")
  text_analysis.plot_signals(shown, os.path.join(out_dir, "ponder.png"), title=title)
  with open(os.path.join(out_dir, "ponder.html"), "w") as f:
    f.write(text_analysis.html_page(shown, tables.items(), title=title))
  with open(os.path.join(out_dir, "analysis.json"), "w") as f:
    json.dump({"workdir": _WORKDIR.value, "step": step, "characters": len(signals.characters),
               **tables}, f, indent=2)
  print(title)
  for name, table in tables.items():
    print(_markdown(name, table) + "\n")
  print(f"wrote {out_dir}/ponder.png, ponder.html, analysis.json")


if __name__ == "__main__":
  app.run(main)
