#!/bin/bash
# A/B of XLA:CPU flags on the ponder benchmark (parity + cap + mixed), one process per flag set.
cd "$(git rev-parse --show-toplevel)"
while read -r name flags; do
  echo "== $name: $flags"
  XLA_FLAGS="$flags" PYTHONPATH=. timeout 600 .venv/bin/python benchmarks/ponder_loop.py --json --lstm=false --long_seq=false --rounds=20 2>&1 | tail -1 > /tmp/xla_flags_$name.json
  python3 - "$name" <<'PY'
import json,sys
try:
  d=json.load(open(f"/tmp/xla_flags_{sys.argv[1]}.json"))
except Exception as e:
  print("failed", e); sys.exit()
p=d["parity_ms"]; m=d["mixed_ms"]; c=d["cap_ms"]
print(f"parity while {p['while']:.3f} plain {p['plain']:.3f} r {d['parity_while_over_plain']:.2f} | fwd {p['while_forward']:.3f}/{p['plain_forward']:.3f} r {d['parity_forward_while_over_plain']:.2f} | cap {c['while']:.2f}/{c['scan_plain']:.2f} | mixed while {m['while']:.2f} compact {m['compact']:.3f} plain {m['plain_mean_n']:.3f} r {d['mixed_compact_over_mean_plain']:.2f}")
PY
done
