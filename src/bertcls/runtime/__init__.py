"""Runtime: processes and hosts (jax.distributed), interrupts, liveness of a process."""
