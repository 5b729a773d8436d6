"""Cost of a zero-filled buffer on XLA:CPU: a while loop writing 2 slots of an [n,128,128] buffer."""
import sys, time, statistics
import jax, jax.numpy as jnp
def make(n):
  @jax.jit
  def f(x):
    buf = jax.lax.empty((n, 128, 128), jnp.float32)
    def body(c):
      i, buf, x = c
      x = jnp.tanh(x)
      return i + 1, jax.lax.dynamic_update_index_in_dim(buf, x, i, 0), x
    _, buf, x = jax.lax.while_loop(lambda c: c[0] < 2, body, (0, buf, x))
    return buf[0].sum() + buf[1].sum() + x.sum()
  return f
x = jnp.ones((128, 128))
fs = {n: make(n) for n in (1, 9, 13, 100)}
for f in fs.values(): f(x).block_until_ready()
s = {n: [] for n in fs}
for _ in range(200):
  for n, f in fs.items():
    t = time.perf_counter(); f(x).block_until_ready(); s[n].append(time.perf_counter() - t)
print({n: round(1e6 * statistics.median(v), 1) for n, v in s.items()}, "us")
