"""gencompress.memory.release: a full collection only after steps that handled a big graph."""
from __future__ import annotations

import gc

from gencompress import memory


def test_release_collects_only_after_a_big_step(monkeypatch):
    calls = []
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append(a) or 0)
    memory.release(memory.RELEASE_ABOVE_BYTES - 1)  # a small graph: a search calls this dozens of times, for nothing
    assert calls == []
    memory.release(memory.RELEASE_ABOVE_BYTES)
    memory.release()  # no size given: always
    assert len(calls) == 2
