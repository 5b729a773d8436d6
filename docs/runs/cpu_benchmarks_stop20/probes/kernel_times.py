"""Per-kernel times of a jitted call from a jax.profiler trace, for the profile_* probes."""
import collections, glob, gzip, json, os, re, shutil

import jax


def print_kernel_times(fn, args, calls: int, trace_dir: str, top: int = 70) -> None:
  """Traces ``calls`` calls of ``fn(*args)`` and prints each kernel's time per call, then the
  kernels grouped by name without their number ("sum": their total, which exceeds the wall
  time where kernels run side by side)."""
  shutil.rmtree(trace_dir, ignore_errors=True)
  with jax.profiler.trace(trace_dir):
    for _ in range(calls):
      jax.block_until_ready(fn(*args))
  path = sorted(glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True),
                key=os.path.getmtime)[-1]
  events = json.load(gzip.open(path))
  events = events["traceEvents"] if isinstance(events, dict) else events
  total, count = collections.Counter(), collections.Counter()
  for e in events:
    if e.get("ph") == "X":
      total[e["name"]] += e.get("dur", 0)
      count[e["name"]] += 1
  not_kernel = lambda name: (name.startswith(("$", "Pjit", "while", "cond"))
                             or "Execute" in name)
  for name, t in total.most_common(top):
    print(f"{t / calls:9.1f} us/step  {count[name] / calls:7.1f}x  {name[:90]}")
  groups = collections.Counter()
  for name, t in total.items():
    if not not_kernel(name):
      groups[re.sub(r"[.\d]+$", "", name)] += t
  print("GROUPS", {k: round(v / calls) for k, v in groups.most_common(15)},
        "sum", round(sum(groups.values()) / calls))
