import sys, re, collections
sys.path.insert(0, "benchmarks"); sys.path.insert(0, ".")  # run from the repository root
import jax
import train_loop as tl
for name, cfg in [("act", tl._text(80, halting_bias=30.0)), ("none", tl._text(80, mode="none"))]:
  f, a = tl.bare_value_and_grad(cfg)
  txt = f.lower(*a).compile().as_text()
  open(f"/tmp/bench/hlo_{name}.txt", "w").write(txt)
  # computations and their instruction counts
  comps = re.split(r"\n(?=\S.*\{\n)", txt)
  sizes = []
  for c in comps:
    head = c.split("\n", 1)[0]
    n = sum(1 for l in c.split("\n")[1:] if "=" in l and not l.strip().startswith("ROOT") or l.strip().startswith("ROOT"))
    sizes.append((n, head[:90]))
  whiles = re.findall(r"while\(.*?body=(%?[\w.\-]+)", txt)
  print(name, "chars", len(txt), "while loops", len(whiles), "conditionals", txt.count(" conditional("), "fusions", txt.count(" fusion("))
  for n, h in sorted(sizes, reverse=True)[:0]: print("  ", n, h)
  for b in whiles:
    bname = b.lstrip("%")
    m = re.search(r"\n%?" + re.escape(bname) + r" .*?\{\n(.*?)\n\}", txt, re.S)
    if m:
      body = m.group(1)
      ops = collections.Counter(re.findall(r"= \S+ (\w[\w\-]*)\(", body))
      print("   body", bname, "instrs", body.count("\n")+1, dict(ops.most_common(8)))
