"""How bertcls asks XLA for speed, and what the persistent compilation cache did.

Dropout bits on CPU: jax lowers its threefry hash on CPU as a rolled loop of five rounds that XLA cannot fuse
with what consumes the bits; on every other platform the rounds are unrolled. Both compute the same uint32s (the
rounds are identical, only the loop differs), and the unrolled form is ~10x faster on an attention-sized dropout
mask here. The lowering table is private jax API, so this is applied only to the jax minor versions it was
checked on and only where the names it needs exist; otherwise jax's own lowering stays. A test asserts that the
bits are identical to a process without it.
"""

from __future__ import annotations

import contextlib
import logging
import threading

import jax

log = logging.getLogger(__name__)

CHECKED_JAX_MINORS = ("0.10",)  # where the two lowerings were compared bit for bit
_applied = False


def use_unrolled_threefry_on_cpu() -> bool:
    """Register the unrolled threefry lowering for CPU (once per process); True when it is in effect."""
    global _applied
    if _applied:
        return True
    if ".".join(jax.__version__.split(".")[:2]) not in CHECKED_JAX_MINORS:
        log.debug("jax %s: its own CPU threefry lowering stays (checked: %s)", jax.__version__, CHECKED_JAX_MINORS)
        return False
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32

        primitive, unrolled = threefry2x32.threefry2x32_p, threefry2x32._threefry2x32_lowering_rule
    except (ImportError, AttributeError) as error:  # the private names moved: jax's default stays
        log.debug("keeping jax's CPU threefry lowering: %s", error)
        return False
    mlir.register_lowering(primitive, unrolled, platform="cpu")
    _applied = True
    return True


def compiler_options(platform: str) -> dict[str, object]:
    """XLA options for every bertcls step compile on `platform`.

    CPU: LLVM's backend at -O1 instead of -O2 compiles a train step ~30 % faster and measured no slower
    (benchmarks/peer.py, docs/benchmarks.md); accelerators keep their defaults.
    """
    return {"xla_backend_optimization_level": 1} if platform == "cpu" else {}


_CACHE_EVENTS = {
    "/jax/compilation_cache/compile_requests_use_cache": "cache_requests",
    "/jax/compilation_cache/cache_hits": "cache_hits",
}
_local = threading.local()
_listening = False


def _count_cache_event(event: str, **_) -> None:
    counts = getattr(_local, "counts", None)
    if counts is not None and event in _CACHE_EVENTS:
        counts[_CACHE_EVENTS[event]] += 1


@contextlib.contextmanager
def persistent_cache_events():
    """Count this thread's persistent-cache lookups and hits while the block compiles: yields the counts dict.

    jax reports them as monitoring events on the compiling thread, so parallel compiles are told apart.
    """
    global _listening
    if not _listening:
        jax.monitoring.register_event_listener(_count_cache_event)
        _listening = True
    _local.counts = dict.fromkeys(_CACHE_EVENTS.values(), 0)
    try:
        yield _local.counts
    finally:
        _local.counts = None
