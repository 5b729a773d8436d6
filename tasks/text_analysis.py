"""Where a language model ponders: per-character signals, tables, plots, HTML.

Graves (2016) section 3.5 (Figs. 23-24) finds that an ACT language model
ponders longer at spaces and at boundary characters (commas, full stops, the
``<`` of XML tags) and not on unpredictable spans such as ID numbers, so that
ponder marks segment boundaries better than loss or entropy do. This module
measures that on any text:

* :func:`character_signals`: per input character, the ponder cost
  ``rho = N + R`` (Eq. 10), the updates ``N``, the loss of predicting the next
  byte and the entropy of that prediction (both in bits). Step ``t`` reads byte
  ``t`` and predicts byte ``t + 1``, so every signal sits on the character
  being read, as in the paper's Figs. 23/24.
* :func:`class_table`: mean signals by character class.
* :func:`window_position_table`: ponder at the first byte of each window, read
  from the reset state, against the other bytes.
* :func:`boundary_table`: how well the peaks of each signal find word
  boundaries (the spaces of the text): precision, recall and F1.
* :func:`plot_signals` (PNG) and :func:`html_page` (each character coloured
  by its ponder).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tasks.data import text

SIGNALS = ("ponder", "loss", "entropy")  # the three signals of the paper's Figs. 23/24


class CharacterSignals(NamedTuple):
  """Per-character signals of a model reading a text, all ``[L]``.

  Attributes:
    characters: the byte read at each step (uint8).
    ponder: ``rho = N + R``, the ponder cost of the step (Eq. 10).
    steps: ``N``, the updates the step took.
    loss: ``-log2 p(next byte)``, bits.
    entropy: entropy of the predicted next-byte distribution, bits.
  """

  characters: np.ndarray
  ponder: np.ndarray
  steps: np.ndarray
  loss: np.ndarray
  entropy: np.ndarray


@nnx.jit
def _window_signals(model, inputs: jax.Array, targets: jax.Array, mask: jax.Array):
  out = model(inputs, mask)
  log_probs = jax.nn.log_softmax(out.logits.astype(jnp.float32), axis=-1)
  picked = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  entropy = -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)
  return {"ponder": out.stats.ponder_cost, "steps": out.stats.steps,
          "loss": -picked / jnp.log(2.0), "entropy": entropy / jnp.log(2.0)}


def character_signals(model, byte_values: np.ndarray, window: int,
                      batch_size: int = 16) -> CharacterSignals:
  """Runs ``model`` over a text in consecutive windows, the state reset per window.

  Args:
    model: a trained :class:`tasks.models.TaskModel` of the ``text`` task.
    byte_values: ``[L]`` bytes of the text, ``L >= 2``.
    window: bytes per window (the training window: the model never saw a
      longer sequence).
    batch_size: windows per forward pass.

  Returns:
    The signals of the ``L - 1`` characters that have a next byte to predict.
  """
  byte_values = np.asarray(byte_values, np.uint8)
  parts = []
  for inputs, targets, mask in text.eval_windows(byte_values, batch_size, window):
    out = jax.device_get(_window_signals(model, inputs.astype(np.int32),
                                         targets.astype(np.int32), mask))
    parts.append({"characters": inputs[mask], **{k: np.asarray(v)[mask] for k, v in out.items()}})
  return CharacterSignals(**{k: np.concatenate([p[k] for p in parts])
                             for k in CharacterSignals._fields})


def class_table(signals: CharacterSignals) -> dict[str, dict[str, float]]:
  """Mean ponder, N, loss and entropy by character class (`text.CHARACTER_CLASSES`)."""
  classes = text.character_class(signals.characters)
  table = {}
  for i, name in enumerate(text.CHARACTER_CLASSES):
    sel = classes == i
    if sel.any():
      table[name] = {"count": int(sel.sum()),
                     "mean_ponder": float(signals.ponder[sel].mean()),
                     "mean_steps": float(signals.steps[sel].mean()),
                     "mean_loss": float(signals.loss[sel].mean()),
                     "mean_entropy": float(signals.entropy[sel].mean())}
  return table


def window_position_table(signals: CharacterSignals, window: int) -> dict[str, dict[str, float]]:
  """Mean ponder and N at the first byte of each window and at the other bytes.

  :func:`character_signals` reads consecutive windows of ``window`` bytes with
  the state reset per window, so character ``i`` is at position ``i % window``
  of its window, and position 0 is read from the reset state.
  """
  first = np.arange(len(signals.characters)) % window == 0
  return {name: {"count": int(sel.sum()), "mean_ponder": float(signals.ponder[sel].mean()),
                 "mean_steps": float(signals.steps[sel].mean())}
          for name, sel in (("first byte of a window", first), ("other bytes", ~first))
          if sel.any()}


def peaks(signal: np.ndarray) -> np.ndarray:
  """Marks the peaks of a signal: local maxima that rise above its mean.

  Position ``t`` is a peak when ``signal[t] > signal[t - 1]``,
  ``signal[t] >= signal[t + 1]`` (a missing neighbour at either end counts as
  lower) and ``signal[t] > mean(signal)``. A flat signal has no peaks.
  """
  signal = np.asarray(signal, np.float64)
  left = np.concatenate([[-np.inf], signal[:-1]])
  right = np.concatenate([signal[1:], [-np.inf]])
  return (signal > left) & (signal >= right) & (signal > signal.mean())


def detection_scores(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
  """Precision, recall and F1 of boolean predictions against boolean labels.

  An empty prediction has precision 0 (nothing found), as does F1 when
  precision and recall are both 0.
  """
  predicted, actual = np.asarray(predicted, bool), np.asarray(actual, bool)
  hits = float(np.sum(predicted & actual))
  precision = hits / predicted.sum() if predicted.any() else 0.0
  recall = hits / actual.sum() if actual.any() else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return {"precision": precision, "recall": recall, "f1": f1,
          "predicted": int(predicted.sum()), "actual": int(actual.sum())}


def boundary_table(signals: CharacterSignals) -> dict[str, dict[str, float]]:
  """How well the peaks of ponder, loss and entropy find word boundaries.

  A boundary is a step that reads a space (its prediction is the next word's
  first byte). Each signal's :func:`peaks` are scored against those steps.
  """
  spaces = signals.characters == ord(" ")
  return {name: detection_scores(peaks(getattr(signals, name)), spaces) for name in SIGNALS}


def _printable(byte: int) -> str:
  """A visible one-character label for a byte."""
  if byte == ord(" "):
    return "\u2423"  # open box: a visible space
  if byte == ord("\n"):
    return "\u21b5"  # downwards arrow with corner leftwards
  return chr(byte) if 32 < byte < 127 else "\u00b7"


def plot_signals(signals: CharacterSignals, path: str, *, chars_per_row: int = 80,
                 title: str = "") -> str:
  """Draws ponder, loss and entropy along the text (paper Figs. 23/24) as a PNG.

  The text is cut into rows of ``chars_per_row`` characters; each row gets
  three panels sharing its character axis.

  Returns:
    ``path``.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  rows = max(1, -(-len(signals.characters) // chars_per_row))
  fig, axes = plt.subplots(3 * rows, 1, figsize=(chars_per_row * 0.16, 4.2 * rows),
                           squeeze=False)
  labels = {"ponder": "ponder \u03c1", "loss": "loss (bits)", "entropy": "entropy (bits)"}
  colours = {"ponder": "C3", "loss": "C0", "entropy": "C2"}
  limits = {name: (0.0, float(np.max(getattr(signals, name))) * 1.05 or 1.0) for name in SIGNALS}
  limits["ponder"] = (float(np.min(signals.ponder)) * 0.95, limits["ponder"][1])
  for row in range(rows):
    part = slice(row * chars_per_row, (row + 1) * chars_per_row)
    characters = signals.characters[part]
    x = np.arange(len(characters))
    for k, name in enumerate(SIGNALS):
      ax = axes[3 * row + k, 0]
      ax.plot(x, getattr(signals, name)[part], color=colours[name], lw=1.2)
      ax.set_xlim(-0.5, chars_per_row - 0.5)
      ax.set_ylim(*limits[name])
      ax.set_ylabel(labels[name], fontsize=7)
      ax.tick_params(labelsize=6)
      ax.set_xticks(x)
      ax.set_xticklabels([_printable(int(c)) for c in characters] if k == 2 else [],
                         fontsize=7, family="monospace")
  if title:
    fig.suptitle(title)
  fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (4.2 * rows)))  # room for the title
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def _html_table(title: str, table: Mapping[str, Mapping[str, float]]) -> str:
  columns = list(next(iter(table.values())))
  head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
  body = "".join(
      f"<tr><th>{html.escape(name)}</th>"
      + "".join(f"<td>{row[c]:.3f}</td>" if isinstance(row[c], float) else f"<td>{row[c]}</td>"
                for c in columns) + "</tr>"
      for name, row in table.items())
  return f"<h2>{html.escape(title)}</h2><table><tr><th></th>{head}</tr>{body}</table>"


def html_page(signals: CharacterSignals, tables: Iterable[tuple[str, Mapping]] = (),
              title: str = "Ponder per character") -> str:
  """An HTML page showing each character on a background coloured by its ponder.

  White is the text's lowest ponder, full red its highest; hovering a
  character shows its ponder, N, loss and entropy. ``tables`` (title, rows)
  are appended below the text.
  """
  low, high = float(signals.ponder.min()), float(signals.ponder.max())
  scale = (signals.ponder - low) / (high - low) if high > low else np.zeros_like(signals.ponder)
  spans = []
  for c, s, rho, n, loss, entropy in zip(signals.characters, scale, signals.ponder,
                                         signals.steps, signals.loss, signals.entropy):
    c = int(c)
    shown = "\u21b5<br>" if c == ord("\n") else html.escape(chr(c) if c < 128 else "\u00b7")
    shade = int(round(255 * (1 - s)))
    tip = f"{chr(c)!r} rho={rho:.3f} N={int(n)} loss={loss:.2f} bits entropy={entropy:.2f} bits"
    spans.append(f'<span style="background:rgb(255,{shade},{shade})" '
                 f'title="{html.escape(tip)}">{shown}</span>')
  tables_html = "".join(_html_table(name, table) for name, table in tables)
  return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
          "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
          ".text{font-family:monospace;white-space:pre-wrap;line-height:1.6;font-size:15px}"
          "td,th{padding:2px 8px;text-align:right}</style></head><body>"
          f"<h1>{html.escape(title)}</h1>"
          f"<p>Background: ponder &rho; = N + R from {low:.3f} (white) to {high:.3f} (red).</p>"
          f"<div class='text'>{''.join(spans)}</div>{tables_html}</body></html>")
