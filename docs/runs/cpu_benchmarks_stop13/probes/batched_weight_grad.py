import time, jax, jax.numpy as jnp, numpy as np
B,H,I=128,128,65
k=jax.random.split(jax.random.key(0),6)
U=jax.random.normal(k[0],(H,H))*0.05; Wx=jax.random.normal(k[1],(I,H))*0.05; b=jnp.zeros(H)
x=jax.random.normal(k[2],(B,I)); 
def make(nsteps, cap):
  # forward records h_prev and y per step into [cap,B,H] buffers (like the while backend)
  def fwd(h0):
    xp = x@Wx + b
    def body(c):
      n,h,Hs,Ys=c
      y=jnp.tanh(xp + h@U)
      return n+1,y,Hs.at[n].set(h),Ys.at[n].set(y)
    return jax.lax.while_loop(lambda c:c[0]<nsteps, body, (0,h0,jnp.zeros((cap,B,H)),jnp.zeros((cap,B,H))))
  def bwd_acc(Hs,Ys,g):
    def body(c):
      n,g,dU,dWx,db=c
      m=n-1
      gp=g*(1-Ys[m]**2)
      return m,gp@U.T,dU+Hs[m].T@gp,dWx+x.T@gp,db+gp.sum(0)
    return jax.lax.while_loop(lambda c:c[0]>0, body,(nsteps,g,jnp.zeros((H,H)),jnp.zeros((I,H)),jnp.zeros(H)))
  def bwd_batched(Hs,Ys,g):
    def body(c):
      n,g,G=c
      m=n-1
      gp=g*(1-Ys[m]**2)
      return m,gp@U.T,G.at[m].set(gp)
    _,g,G=jax.lax.while_loop(lambda c:c[0]>0, body,(nsteps,g,jnp.zeros((cap,B,H))))
    dU=Hs.reshape(cap*B,H).T@G.reshape(cap*B,H)   # unused rows of G are zero
    S=G.sum(0)
    return g,dU,x.T@S,S.sum(0)
  f1=jax.jit(lambda h0,g: (lambda r: bwd_acc(r[2],r[3],g))(fwd(h0)))
  f2=jax.jit(lambda h0,g: (lambda r: bwd_batched(r[2],r[3],g))(fwd(h0)))
  return f1,f2
h0=jnp.zeros((B,H)); g=jax.random.normal(k[3],(B,H))
for nsteps,cap in [(2,2),(3,4),(3,8),(8,8),(50,50)]:
  f1,f2=make(nsteps,cap)
  r1=f1(h0,g); r2=f2(h0,g)
  np.testing.assert_allclose(r1[2],r2[1],rtol=1e-3,atol=1e-4)
  ts={1:[],2:[]}
  for r in range(30):
    for i,f in ((1,f1),(2,f2)):
      jax.block_until_ready(f(h0,g)); t=time.perf_counter(); jax.block_until_ready(f(h0,g)); ts[i].append(time.perf_counter()-t)
  m1,m2=np.median(ts[1])*1e3,np.median(ts[2])*1e3
  print(f"steps {nsteps} cap {cap}: acc {m1:.3f} ms batched {m2:.3f} ms ratio {m2/m1:.2f}",flush=True)
