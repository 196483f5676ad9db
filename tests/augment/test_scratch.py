"""_scratch: per-thread buffers reused per purpose, bounded, plain tensors under inference mode."""

from __future__ import annotations

import threading

import torch

from setforge.plugins.augment import _scratch
from setforge.plugins.augment._scratch import release, scratch

CPU = torch.device("cpu")


def test_a_purpose_reuses_its_memory_and_purposes_do_not_share():
    release()
    a = scratch("one", (4, 5), torch.float32, CPU)
    b = scratch("one", (2, 3), torch.float32, CPU)  # smaller: a view of the same memory
    c = scratch("two", (4, 5), torch.float32, CPU)
    assert b.data_ptr() == a.data_ptr() and c.data_ptr() != a.data_ptr()
    assert a.shape == (4, 5) and b.shape == (2, 3) and a.is_contiguous() and a.dtype == torch.float32
    grown = scratch("one", (40, 50), torch.float64, CPU)  # larger: the buffer grows
    assert grown.shape == (40, 50) and grown.dtype == torch.float64
    grown.fill_(1.0)
    release()


def test_threads_have_their_own_buffers():
    mine = scratch("t", (8,), torch.float32, CPU)
    theirs: list[int] = []
    worker = threading.Thread(target=lambda: theirs.append(scratch("t", (8,), torch.float32, CPU).data_ptr()))
    worker.start()
    worker.join()
    assert theirs and theirs[0] != mine.data_ptr()
    release()


def test_requests_over_the_limit_are_fresh(monkeypatch):
    monkeypatch.setattr(_scratch, "MAX_BYTES", 64)
    first = scratch("big", (32,), torch.float32, CPU)  # 128 bytes
    second = scratch("big", (32,), torch.float32, CPU)
    assert first.data_ptr() != second.data_ptr()  # (both alive: the second is new memory)
    assert "big" not in _scratch._LOCAL.__dict__.get("buffers", {})


def test_a_buffer_made_under_inference_mode_is_writable_outside_it():
    release()
    with torch.inference_mode():
        scratch("inf", (3, 3), torch.float32, CPU).fill_(2.0)
    again = scratch("inf", (3, 3), torch.float32, CPU)
    assert not again.is_inference()
    again.add_(1.0)  # an inference tensor would refuse this outside inference mode
    assert float(again.sum()) == 27.0
    release()


def test_buffers_are_on_the_cpu_whatever_torchs_default_device():
    # (torch.set_default_device("cuda") in a training loop must not move the CPU ops' scratch: a
    # buffer made on the default device failed every CPU colour and filled warp with "cross-device")
    release()
    with torch.device("meta"):
        made = scratch("default-device", (4, 5), torch.float32, CPU)
    assert made.device == CPU
    made.fill_(1.0)
    assert float(made.sum()) == 20.0
    release()
