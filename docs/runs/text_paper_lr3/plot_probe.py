"""Plots halting_probe.py's JSON lines: N, the halting unit's outputs and its two bias gradients.

  python docs/runs/text_paper_lr3/plot_probe.py halting.jsonl out.png [title]
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
  path, out = sys.argv[1], sys.argv[2]
  title = sys.argv[3] if len(sys.argv) > 3 else path
  rows = sorted((json.loads(line) for line in open(path)), key=lambda r: r["step"])
  steps = [r["step"] for r in rows]
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))

  ax = axes[0]
  ax.semilogy(steps, [r["mean_n"] for r in rows], "o-", label="mean N")
  ax.semilogy(steps, [max(r["share_n_1"], 1e-3) for r in rows], "s--",
              label="share of bytes with N = 1 (shown >= 1e-3)")
  ax.set(xlabel="training step", title="ponder (held-out windows)")
  ax.legend()

  ax = axes[1]
  ax.semilogy(steps, [abs(r["d_bias_task"]) for r in rows], "o-",
              label="|d task loss / d bias| (positive: toward more steps)")
  ax.semilogy(steps, [abs(r["d_bias_ponder"]) for r in rows], "s-",
              label="|d tau P / d bias| (negative: toward fewer steps)")
  ax.set(xlabel="training step", title="gradient on the halting unit's bias")
  ax.legend(fontsize=8)

  ax = axes[2]
  probed = [r for r in rows if r["mean_h_slope"] is not None]
  q = [r["h_before_last_q10_q50_q90"] for r in probed]
  x = [r["step"] for r in probed]
  ax.semilogy(x, [v[1] for v in q], "o-", label="median h^n, n < N")
  ax.fill_between(x, [v[0] for v in q], [v[2] for v in q], alpha=0.3, label="10-90 %")
  ax.semilogy(x, [r["mean_h_slope"] for r in probed], "s--", label="mean h (1 - h)")
  ax.set(xlabel="training step", title="halting unit outputs before the last step")
  ax.legend(fontsize=8)

  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(out, dpi=110)


if __name__ == "__main__":
  main()
