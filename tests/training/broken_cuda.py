"""torch as pipeline.training.memory sees it on a GPU whose context a real CUDA error (an illegal
memory access) broke: freeing the cache raises too. Only a GPU does that for real."""

from __future__ import annotations

from types import SimpleNamespace


def broken_cuda() -> SimpleNamespace:
    def empty_cache() -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel "
                           "errors might be asynchronously reported")

    return SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: True,
                                                empty_cache=empty_cache))
