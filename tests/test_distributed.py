"""Which environments mean "several processes", and the refusal of a half-given cluster (no JAX cluster is
joined here: tests/test_multihost.py starts two real processes)."""

from __future__ import annotations

import pytest

from bertcls.errors import ConfigError
from bertcls.runtime.distributed import detected_cluster, initialize


@pytest.mark.parametrize(
    ("environ", "found"),
    [
        ({}, None),
        ({"SLURM_NTASKS": "1"}, None),
        ({"TPU_WORKER_HOSTNAMES": "localhost"}, None),  # a single TPU VM: one process
        ({"SLURM_NTASKS": "4"}, "SLURM"),
        ({"OMPI_COMM_WORLD_SIZE": "2"}, "Open MPI"),
        ({"TPU_WORKER_HOSTNAMES": "10.0.0.2,10.0.0.3"}, "TPU pod"),
        ({"JAX_COORDINATOR_ADDRESS": "10.0.0.2:1234"}, "coordinator"),
    ],
)
def test_a_cluster_is_detected_only_when_it_has_several_processes(environ, found):
    described = detected_cluster(environ)
    assert (described is None) if found is None else (found in described)


@pytest.mark.parametrize(
    "cluster",
    [
        {"coordinator": "127.0.0.1:1234", "num_processes": 0},
        {"num_processes": 2},
        {"coordinator": "127.0.0.1:1234", "num_processes": 2, "process_id": 2},
    ],
)
def test_a_half_given_cluster_is_refused_with_what_every_process_needs(cluster):
    with pytest.raises(ConfigError, match="coordinator=host:port, num_processes >= 2 and 0 <= process_id"):
        initialize(**cluster)
