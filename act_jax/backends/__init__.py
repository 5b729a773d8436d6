"""The loop backends of :func:`act_jax.ponder`, one per module, each behind the
same call: ``ponder(step_fn, max_steps, threshold, params, state, inputs, mask, ...)``
returning a :class:`act_jax.PonderResult`."""
