"""Freeing memory after a training: a CUDA context broken by a real CUDA error makes the free
itself raise (only a GPU does that for real, so the free call is made to raise here)."""

from __future__ import annotations

import logging

import pytest

from pipeline.training import memory
from tests.training.broken_cuda import broken_cuda


def test_a_free_that_raises_is_one_warning_and_the_original_error_travels_on(monkeypatch, caplog):
    monkeypatch.setattr(memory, "torch", broken_cuda())
    original = RuntimeError("CUDA error: device-side assert triggered")
    with caplog.at_level(logging.WARNING, logger=memory.__name__):
        with pytest.raises(RuntimeError) as raised:
            try:
                raise original
            finally:
                memory.free_memory()  # as run_training's finally calls it
    assert raised.value is original
    assert [r.getMessage() for r in caplog.records] == [
        "could not free CUDA memory after the training (RuntimeError: CUDA error: an illegal "
        "memory access was encountered)"]
