"""Many hosts: join the JAX cluster before anything touches a device.

`jax.distributed.initialize()` runs when the options name a coordinator, or when a cluster environment
that JAX detects by itself is present (a Cloud TPU pod slice, SLURM with several tasks, Open MPI, or
JAX_COORDINATOR_ADDRESS). After it, `jax.devices()` lists every process's devices, the ('data',) mesh spans
them all, and process 0 alone talks to MLflow (bertcls.jobs.train). On CPU the collectives go through gloo.
"""

from __future__ import annotations

import os

from bertcls.errors import ConfigError

_CLUSTER_SIGNS = {  # environment variable -> what it means when it names more than one process
    "JAX_COORDINATOR_ADDRESS": "a coordinator set for jax.distributed",
    "TPU_WORKER_HOSTNAMES": "a Cloud TPU pod slice (several TPU VM workers)",
    "SLURM_NTASKS": "a SLURM job with several tasks",
    "OMPI_COMM_WORLD_SIZE": "an Open MPI job with several ranks",
}


def detected_cluster(environ=os.environ) -> str | None:
    """What cluster environment of several processes is present, or None on a single host."""
    if environ.get("JAX_COORDINATOR_ADDRESS"):
        return _CLUSTER_SIGNS["JAX_COORDINATOR_ADDRESS"]
    if "," in environ.get("TPU_WORKER_HOSTNAMES", ""):
        return _CLUSTER_SIGNS["TPU_WORKER_HOSTNAMES"]
    for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        if environ.get(name, "1").isdigit() and int(environ.get(name, "1")) > 1:
            return _CLUSTER_SIGNS[name]
    return None


def initialize(coordinator: str | None = None, num_processes: int = 0, process_id: int = 0) -> str | None:
    """Join the cluster (idempotent); returns how it was found, or None for a single-process run.

    coordinator "host:port" with num_processes > 1 and this process's id: an explicit cluster (any machines,
    or several processes on one). Otherwise a detected cluster environment, or nothing.
    """
    import jax

    if jax.distributed.is_initialized():
        return "already initialized"
    if coordinator or num_processes > 1:
        if not coordinator or num_processes < 2 or not 0 <= process_id < num_processes:
            raise ConfigError(
                f"A multi-process run needs coordinator=host:port, num_processes >= 2 and 0 <= process_id < "
                f"num_processes (given coordinator={coordinator or 'none'}, num_processes={num_processes}, "
                f"process_id={process_id}). Start the same command on every process with its own process_id."
            )
        how = f"coordinator {coordinator}, process {process_id} of {num_processes}"
        kwargs = {"coordinator_address": coordinator, "num_processes": num_processes, "process_id": process_id}
    else:
        how = detected_cluster()
        if how is None:
            return None
        kwargs = {}
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts; GPUs and TPUs use their own
    jax.distributed.initialize(**kwargs)
    return how


def is_primary() -> bool:
    """Process 0: the one that logs to MLflow and prints."""
    import jax

    return jax.process_index() == 0
