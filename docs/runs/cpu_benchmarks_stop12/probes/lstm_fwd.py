import sys, time, functools
sys.path.insert(0,"benchmarks")
import jax, jax.numpy as jnp, numpy as np
import act_jax
import ponder_loop as pl
from absl import flags
flags.FLAGS(["x"])
B,H,I,T,M=32,512,64,5,20
params=pl._params(jax.random.PRNGKey(0),"lstm",I,H,-0.4)
x=jax.random.choice(jax.random.PRNGKey(1), jnp.array([-1.0,0.0,1.0]),(B,T,I))
targets=jax.random.bernoulli(jax.random.PRNGKey(2),0.5,(B,T,1)).astype(jnp.float32)
z=jnp.zeros((B,H)); state=(z,z)
args=(params,state,x,targets)
_,fwd,stats=pl._act_train_step(pl._lstm_cell,"while",M,True)
st=stats(params,state,x)
taken=[int(n) for n in jnp.max(st.steps,axis=0)]
print("taken",taken,"mean",float(jnp.mean(st.steps)))
_,plain_fwd=pl._plain_train_step(pl._lstm_cell,taken,True)
step_fn=pl._act_step_fn(pl._lstm_cell,True)
def variant(**kw):
  @jax.jit
  def f(params,state,x,targets):
    r=act_jax.ponder_sequence(step_fn,params,state,x,max_steps=M,**kw)
    return pl._bce(r.outputs@params["w_y"],targets)+act_jax.ponder_penalty(r.stats.ponder_cost,1e-3)
  return f
# hand-written: per input step, while loop of cell for taken steps, no halting
@jax.jit
def hand_while(params,state,x,targets):
  outs=[]
  for t,n in enumerate(taken):
    def body(c):
      i,s=c
      return i+1, pl._lstm_cell(params,s,act_jax.with_first_step_flag(x[:,t],i))
    _,state=jax.lax.while_loop(lambda c:c[0]<n, body,(0,state))
    outs.append(state[1])
  return pl._bce(jnp.stack(outs,1)@params["w_y"],targets)
fs={"act":fwd,"plain":plain_fwd,"act_noflag":variant(first_step_flag_only=False),"act_flag":variant(first_step_flag_only=True),"act_scanbackend":variant(backend="scan"),"hand_while":hand_while}
for f in fs.values(): jax.block_until_ready(f(*args))
for r in range(2):
  for name,f in fs.items():
    ts=[]
    for _ in range(20):
      t0=time.perf_counter(); jax.block_until_ready(f(*args)); ts.append(time.perf_counter()-t0)
    print(name, round(np.median(ts)*1e3,2),"ms")
print("--- interleaved like the benchmark")
step_w,_,_=pl._act_train_step(pl._lstm_cell,"while",M,True)
step_s,_,_=pl._act_train_step(pl._lstm_cell,"scan",M,True)
plain_step,_=pl._plain_train_step(pl._lstm_cell,taken,True)
import timing
for r in range(2):
  print({k:round(v*1e3,2) for k,v in timing.median_seconds({"while":step_w,"scan":step_s,"plain":plain_step,"while_forward":fwd,"plain_forward":plain_fwd},args,20).items()})
  print({k:round(v*1e3,2) for k,v in timing.median_seconds({"while":step_w,"plain":plain_step,"while_forward":fwd,"plain_forward":plain_fwd},args,20).items()})
  print({k:round(v*1e3,2) for k,v in timing.median_seconds({"while_forward":fwd,"plain_forward":plain_fwd},args,20).items()})
