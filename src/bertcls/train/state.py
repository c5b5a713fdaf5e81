"""The device state both trainers hold: a model and its optimizer split into graph definitions (bound into the
jitted steps) and arrays replicated over the mesh, plus the base dropout key; and their host copies."""

from __future__ import annotations

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from bertcls.runtime.xla import use_unrolled_threefry_on_cpu


class TrainState:
    """`model_state`, `opt_state` and `base_key` on the mesh; `model_def` and `opt_def` to merge them back."""

    def __init__(self, model: nnx.Module, tx: optax.GradientTransformation, mesh, seed: int, wrt=nnx.Param):
        use_unrolled_threefry_on_cpu()  # the same dropout bits, faster (runtime/xla.py)
        self.mesh = mesh
        self.model_def, model_state = nnx.split(model)
        self.opt_def, opt_state = nnx.split(nnx.Optimizer(model, tx, wrt=wrt))
        replicated = NamedSharding(mesh, PartitionSpec())
        self.model_state = jax.device_put(model_state, replicated)
        self.opt_state = jax.device_put(opt_state, replicated)
        self.base_key = jax.device_put(jax.random.key_data(jax.random.key(seed)), replicated)  # uint32 [2]

    def host_model_state(self):
        """A host (numpy) copy of the parameters, e.g. to keep the best epoch."""
        return jax.tree.map(np.asarray, jax.device_get(self.model_state))

    def load_model_state(self, host_state) -> None:
        self.model_state = jax.device_put(host_state, NamedSharding(self.mesh, PartitionSpec()))

    def model(self, host_state=None) -> nnx.Module:
        """The model with these parameters (the current ones by default), on the host."""
        return nnx.merge(self.model_def, host_state if host_state is not None else self.host_model_state())

    def optimizer_step(self) -> int:
        return int(jax.device_get(nnx.merge(self.opt_def, self.opt_state).step[...]))
