"""Chain mechanics beyond fusion: chunks of rows, in-place ops on the chain's own intermediates."""

from __future__ import annotations

import contextlib
import threading

import pytest
import torch

from setforge import Augmenter, Origin, PluginError, StepContext
from setforge.chain import Chain
from setforge.testing import sample_dataset
from setforge.plugins.augment.color import Color
from setforge.plugins.augment.geometric import Affine, Flip, ResizedCrop
from setforge.plugins.augment.pixel import Erasing, GaussianBlur, Invert
from setforge.plugins.augment.tabular import FeatureNoise, Mixup

from ._helpers import smooth_images


@contextlib.contextmanager
def torch_threads(count: int):
    """torch set to `count` intra-op threads inside the block, as it was after."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("linear_rows", [False, True], ids=["colour-one-at-a-time", "colour-linear-rows"])
def test_chunked_chain_equals_whole_batch(monkeypatch, linear_rows):
    import setforge.plugins.augment.color as color_module

    # (images under LINEAR_ROWS_POINTS take colour's other CPU path: both give the same bits chunked)
    monkeypatch.setattr(color_module, "LINEAR_ROWS_POINTS", 0 if linear_rows else 1 << 40)
    x = smooth_images(9, height=16, width=16)
    chain = Chain([Flip(), Affine(), Color({"hue": 0.1}), Erasing({"p": 0.5}), ResizedCrop(), GaussianBlur()])
    params = chain.make_params(x, None, torch.Generator().manual_seed(0))
    whole = chain(x, params=params)
    monkeypatch.setattr(Chain, "chunk_bytes", 2 * x[0].numel() * 4)  # two rows a chunk, the last one alone
    assert torch.equal(chain(x, params=params), whole)


def test_in_place_ops_never_touch_the_callers_batch():
    x = smooth_images(6)
    before = x.clone()
    for ops in ([Color(), Color()], [Flip({"p": 0.0}), Affine({"p": 0.0}), Color()], [Invert({"p": 1.0}), Color()],
                [Flip(), Affine(), Color(), Color()]):
        chain = Chain(ops)
        params = chain.make_params(x, None, torch.Generator().manual_seed(1))
        out = chain(x, params=params)
        assert torch.equal(x, before)
        assert torch.equal(chain(x, params=params), out)


def test_in_place_colour_equals_the_plain_one():
    x = smooth_images(5)
    chain = Chain([Invert({"p": 1.0}), Color({"hue": 0.3})])
    params = chain.make_params(x, None, torch.Generator().manual_seed(2))
    out = chain(x, params=params)
    assert torch.equal(out, Color({"hue": 0.3})(1.0 - x, params=params["1"]))


def test_a_chain_with_a_batch_wide_op_is_not_chunked(monkeypatch):
    x = torch.randn(40, 3)
    y = torch.arange(40) % 2
    chain = Chain([FeatureNoise(), Mixup()])
    assert not chain.rows_independent
    params = chain.make_params(x, y, torch.Generator().manual_seed(0))
    whole = chain(x, y, params=params)
    monkeypatch.setattr(Chain, "chunk_bytes", 8)
    assert torch.equal(chain(x, y, params=params), whole)
    assert torch.equal(chain.parent_index(params, 40, x.device), params["1"]["parent"])


def test_small_cpu_batches_run_on_one_thread_and_the_setting_comes_back(monkeypatch):
    seen = []

    class Probe(Invert):
        def _transform(self, x, y, params):
            seen.append(torch.get_num_threads())
            return super()._transform(x, y, params)

    with torch_threads(2):
        x = smooth_images(4, height=8, width=8)
        probe = Probe({"p": 1.0})
        assert torch.equal(probe(x), 1.0 - x)
        assert seen == [1] and torch.get_num_threads() == 2
        monkeypatch.setattr(Probe, "one_thread_elements", x.numel() - 1)  # a batch above the bound keeps its threads
        probe(x)
        assert seen == [1, 2] and torch.get_num_threads() == 2


def test_a_chunked_chain_shares_its_chunks_among_worker_threads_of_one_thread_each(monkeypatch):
    seen = []

    class Probe(Invert):
        def _transform(self, x, y, params):
            seen.append((threading.current_thread().name, torch.get_num_threads(), torch.is_grad_enabled(), len(x)))
            return super()._transform(x, y, params)

    with torch_threads(2):
        x = smooth_images(9, height=8, width=8)
        chain = Chain([Flip(), Affine(), Probe({"p": 1.0}), Color()])
        params = chain.make_params(x, None, torch.Generator().manual_seed(4))
        whole = chain(x, params=params)
        assert seen == [("MainThread", 1, False, 9)]  # one chunk: the one-thread bound of a small batch
        seen.clear()
        monkeypatch.setattr(Chain, "chunk_bytes", 2 * x[0].numel() * 4)  # at most two rows a chunk
        assert torch.equal(chain(x, params=params), whole)
        # 9 rows, chunks of at most 2 rows, shared by the 2 worker threads
        assert sorted(rows for *_, rows in seen) == [1, 2, 2, 2, 2]
        assert {name.startswith("setforge-chain") for name, *_ in seen} == {True}
        assert {(threads, grad) for _, threads, grad, _ in seen} == {(1, False)}
        assert torch.get_num_threads() == 2
        seen.clear()
        torch.set_num_threads(1)  # one thread: the chunks run in turn on the caller's thread
        assert torch.equal(chain(x, params=params), whole)
        assert [(name, rows) for name, _, _, rows in seen] == [("MainThread", 2)] * 4 + [("MainThread", 1)]


def test_grad_mode_is_switched_off_inside_when_nothing_requires_grad():
    seen = []

    class Probe(Invert):
        def _transform(self, x, y, params):
            seen.append(torch.is_grad_enabled())
            return super()._transform(x, y, params)

    x = smooth_images(3, height=8, width=8)
    probe = Probe({"p": 1.0})
    assert not probe(x).requires_grad and seen == [False] and torch.is_grad_enabled()
    leaf = x.clone().requires_grad_(True)
    out = probe(leaf)
    assert seen == [False, True] and out.requires_grad
    out.sum().backward()
    assert torch.equal(leaf.grad, torch.full_like(x, -1.0))


def test_a_chunked_chain_whose_last_op_writes_into_the_output_equals_the_whole_batch(monkeypatch):
    x = smooth_images(7, height=16, width=16)
    chain = Chain([Flip(), Affine(), Color({"hue": 0.1})])
    params = chain.make_params(x, None, torch.Generator().manual_seed(3))
    params["2"]["apply"][:] = True  # every row: the colour writes each chunk straight into the output
    whole = chain(x, params=params)
    written = []
    real = Color._transform_into

    def spy(self, out, x, y, params):
        written.append(out.data_ptr())
        return real(self, out, x, y, params)

    monkeypatch.setattr(Color, "_transform_into", spy)
    monkeypatch.setattr(Chain, "chunk_bytes", 3 * x[0].numel() * 4)  # at most three rows a chunk
    out = chain(x, params=params)
    assert torch.equal(out, whole)
    row_bytes = x[0].numel() * 4
    assert len(written) >= 3 and min(written) == out.data_ptr()
    assert all((ptr - out.data_ptr()) % row_bytes == 0 and ptr < out.data_ptr() + out.numel() * 4 for ptr in written)


def test_a_chunked_chain_takes_no_more_workers_than_chunks_or_cpus(monkeypatch):
    from setforge import chain as chain_module

    seen = []

    class Probe(Invert):
        def _transform(self, x, y, params):
            seen.append((threading.current_thread().name, len(x)))
            return super()._transform(x, y, params)

    with torch_threads(8):
        x = smooth_images(6, height=8, width=8)
        chain = Chain([Probe({"p": 1.0}), Color()])
        params = chain.make_params(x, None, torch.Generator().manual_seed(7))
        whole = chain(x, params=params)
        monkeypatch.setattr(Chain, "chunk_bytes", 2 * x[0].numel() * 4)  # three chunks of two rows
        pools, real_pool = [], chain_module._pool
        monkeypatch.setattr(chain_module, "_pool", lambda workers: pools.append(workers) or real_pool(workers))
        for cpus, workers in ((64, 3), (2, 2)):  # 8 torch threads: the chunks, then the CPUs, bound the workers
            seen.clear()
            monkeypatch.setattr(chain_module, "_cpus", lambda: cpus)
            assert torch.equal(chain(x, params=params), whole)
            assert pools[-1] == workers and [rows for _, rows in seen] == [2, 2, 2]
            assert len({name for name, _ in seen}) <= workers and torch.get_num_threads() == 8


def test_a_chunked_chain_on_worker_threads_works_under_inference_mode(monkeypatch):
    with torch_threads(2):
        monkeypatch.setattr(Chain, "chunk_bytes", 2 * 3 * 8 * 8 * 4)
        x = smooth_images(9, height=8, width=8)
        chain = Chain([Flip(), Affine(), Color()])
        params = chain.make_params(x, None, torch.Generator().manual_seed(6))
        plain = chain(x, params=params)
        with torch.inference_mode():  # the output is an inference tensor, which workers may write only under it
            inferred = chain(x, params=params)
        assert inferred.is_inference() and torch.equal(inferred, plain)


def _chain_in_child(x, params, queue):
    chain = Chain([Invert({"p": 1.0}), Color()])
    queue.put(chain(x, params=params).numpy())  # (a tensor would travel as shared memory the child takes with it)


def test_a_forked_child_runs_chunked_chains_on_its_own_worker_threads(monkeypatch):
    import multiprocessing

    with torch_threads(2):
        monkeypatch.setattr(Chain, "chunk_bytes", 2 * 3 * 8 * 8 * 4)
        x = smooth_images(9, height=8, width=8)
        chain = Chain([Invert({"p": 1.0}), Color()])
        params = chain.make_params(x, None, torch.Generator().manual_seed(5))
        in_parent = chain(x, params=params)  # the parent's pool has threads now; the child has none of them
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_chain_in_child, args=(x, params, queue))
        child.start()
        try:
            in_child = queue.get(timeout=60)
        finally:
            child.join(timeout=60)
            if child.is_alive():
                child.kill()
        assert child.exitcode == 0 and torch.equal(torch.from_numpy(in_child), in_parent)


def _chunked_chain(monkeypatch) -> tuple[Chain, torch.Tensor]:
    monkeypatch.setattr(Chain, "chunk_bytes", 2 * 3 * 8 * 8 * 4)
    return Chain([Flip(), Affine(), Color()]), smooth_images(9, height=8, width=8)


def test_a_chunked_chain_reuses_the_memory_of_an_output_nothing_refers_to(monkeypatch):
    chain, x = _chunked_chain(monkeypatch)
    generator = torch.Generator().manual_seed(7)
    first = chain(x, generator=generator)
    address = first.data_ptr()
    del first
    again = chain(x, generator=generator)
    assert again.data_ptr() == address
    fresh = Chain([Flip(), Affine(), Color()])  # (its own kept memory: a new mapping, the same draws)
    params = chain.make_params(x, None, torch.Generator().manual_seed(8))
    assert torch.equal(chain(x, params=params), fresh(x, params=params))


def test_a_chunked_chain_never_writes_into_an_output_still_in_use(monkeypatch):
    chain, x = _chunked_chain(monkeypatch)
    generator = torch.Generator().manual_seed(9)
    held = chain(x, generator=generator)
    view = chain(x, generator=generator)[3:5]  # the batch is gone, a view of it is not
    array = chain(x, generator=generator).numpy()  # an array holds the tensor's memory too
    copies = [t.clone() for t in (held, view, torch.from_numpy(array))]
    later = [chain(x, generator=generator) for _ in range(4)]
    in_use = {held.data_ptr(), view.untyped_storage().data_ptr(), array.ctypes.data}
    assert len(in_use) == 3 and not in_use & {t.data_ptr() for t in later}
    for kept, before in zip((held, view, torch.from_numpy(array)), copies):
        assert torch.equal(kept, before)


def test_a_chains_kept_memory_goes_with_the_chain_and_is_private_to_a_forked_child(monkeypatch):
    import copy
    import gc
    import os
    import weakref

    from setforge import chain as chain_module

    chain, x = _chunked_chain(monkeypatch)
    generator = torch.Generator().manual_seed(10)
    held = chain(x, generator=generator)
    before = held.clone()
    pid = os.fork()
    if pid == 0:  # the child drops its copy of `held` and writes over that memory
        code = 1
        try:
            address = held.data_ptr()
            del held
            code = 0 if chain(x, generator=generator).data_ptr() == address else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and torch.equal(held, before)
    assert torch.equal(copy.deepcopy(chain)(x, params=chain.make_params(x, None, torch.Generator().manual_seed(1))),
                       chain(x, params=chain.make_params(x, None, torch.Generator().manual_seed(1))))
    memory = [weakref.ref(mapping) for mapping in chain_module._KEPT_OUTPUTS[chain]]
    owner = weakref.ref(chain)
    del chain, held
    gc.collect()
    assert memory and owner() is None and all(mapping() is None for mapping in memory)


def test_a_chain_keeps_no_memory_past_a_pipeline_step_nor_for_outputs_over_its_bound(monkeypatch):
    from setforge import Dataset, StepContext
    from setforge import chain as chain_module

    chain, x = _chunked_chain(monkeypatch)
    ds = Dataset(x=x, y=torch.arange(len(x)) % 2, classes=("a", "b"), modality="image")
    ctx = StepContext.from_seed(0)
    ctx.batch_size = 4  # three batches, each chunked: the step holds all three outputs
    grown = chain.augment(ds, ctx, copies=1)
    assert len(grown) == 2 * len(x) and chain not in chain_module._KEPT_OUTPUTS
    chain(x)
    assert chain in chain_module._KEPT_OUTPUTS  # (outside a step it keeps what it can reuse)
    monkeypatch.setattr(chain_module, "_KEPT_BYTES", x.numel() * 4 - 1)
    other = Chain([Flip(), Affine(), Color()])
    big = other(x)
    assert other not in chain_module._KEPT_OUTPUTS and big.untyped_storage().resizable()


def test_a_fork_safe_lock_held_by_a_thread_is_free_in_a_forked_child():
    import os
    import threading

    from setforge.chain import ForkSafeLock

    lock, held, release = ForkSafeLock(), threading.Event(), threading.Event()

    def hold():
        with lock:
            held.set()
            release.wait()

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    pid = os.fork()
    if pid == 0:  # the child has no holding thread: a plain Lock would block here for good
        acquired = lock._lock.acquire(timeout=5)
        os._exit(0 if acquired else 1)
    _, status = os.waitpid(pid, 0)
    release.set()
    thread.join()
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_chunked_chain_of_padded_fused_affines_in_half_precision_equals_the_whole_batch(monkeypatch):
    # (a fused run of two affines fills what the first left outside the image: per row, so chunks
    # on worker threads give the whole batch's rows; bfloat16 is resampled in float32 per chunk too)
    with torch_threads(2):
        for dtype in (torch.float32, torch.bfloat16):
            x = smooth_images(9, height=12, width=16).to(dtype)
            fill = {"fill": (0.1, 0.2, 0.3)}
            chain = Chain([Invert({"p": 0.5}), Affine({"p": 0.8, "degrees": 40, **fill}), Flip(),
                           Affine({"p": 0.6, "scale": (0.5, 0.8), **fill})])
            assert chain.runs == [[0], [1, 2, 3]]
            params = chain.make_params(x, None, torch.Generator().manual_seed(5))
            whole = chain(x, params=params)
            monkeypatch.setattr(Chain, "chunk_bytes", 2 * x[0].numel() * x.element_size())
            chunked = chain(x, params=params)
            monkeypatch.undo()
            assert whole.dtype == dtype and torch.equal(chunked, whole)


def test_a_chunked_chain_on_worker_threads_runs_under_the_callers_autocast(monkeypatch):
    # (found by an audit: worker threads do not inherit autocast, so under torch.autocast("cpu",
    # bfloat16) the chunks in turn on one thread and the chunks on two worker threads differed by 0.03)
    x = torch.rand(9, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    chain = Chain([Flip(), Affine({"degrees": 10}), Color({"hue": 0.1, "saturation": 0.3}), GaussianBlur({"sigma": 1.0})])
    params = chain.make_params(x, None, torch.Generator().manual_seed(0))
    monkeypatch.setattr(Chain, "chunk_bytes", 2 * x[0].numel() * 4)
    outputs = []
    for threads in (1, 2):
        with torch_threads(threads), torch.autocast("cpu", dtype=torch.bfloat16):
            outputs.append(chain(x, params=params).clone())
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[0], chain(x, params=params))  # (autocast does change what the ops give)


class _Suffix(Augmenter):
    """A text op for the tests: appends its suffix to each gated row (rows are a list of str)."""

    name = "suffix"
    modalities = ("text",)

    def __init__(self, suffix: str, p: float = 1.0):
        super().__init__({"p": p})
        self.suffix = suffix

    def make_params(self, x, y=None, generator=None):
        return {"apply": torch.rand(len(x), generator=generator) < self.params.p}

    def apply_params(self, x, y, params):
        return [t + self.suffix if on else t for t, on in zip(x, params["apply"].tolist())]


def test_a_chain_of_text_ops_applies_them_in_turn_with_one_ops_provenance():
    # (found by an audit: the chain indexed a text dataset's list of str with a tensor: TypeError)
    ds = sample_dataset("text")
    chain = Chain([_Suffix(" A"), _Suffix(" B", p=0.5)])
    rows = torch.tensor([1, 7, 11])
    out = chain.augment(ds, StepContext.from_seed(0, step=3, batch_size=2), copies=2, rows=rows)
    assert len(out) == len(ds) + 6 and out.x[:len(ds)] == ds.x
    new = out[len(ds):]
    assert new.parent.tolist() == [1, 7, 11] * 2 and new.y.tolist() == ds.y[rows].tolist() * 2
    assert bool((new.origin == int(Origin.AUGMENTED)).all()) and bool((new.step == 3).all())
    tails = [text[len(ds.x[p]):] for text, p in zip(new.x, new.parent.tolist())]
    assert set(tails) == {" A", " A B"}  # the first op on every row, then the second on about half
    texts = ["one", "two", "three", "four"]
    once = chain(texts, generator=torch.Generator().manual_seed(0))
    assert [t[:len(s) + 2] for t, s in zip(once, texts)] == [s + " A" for s in texts]
    assert chain(texts, params=chain.last_params) == once and chain([]) == []


def test_a_text_op_in_a_chain_that_returns_no_list_of_str_is_named():
    class Broken(_Suffix):
        name = "broken"

        def apply_params(self, x, y, params):
            return [len(t) for t in x]

    with pytest.raises(PluginError, match="augment 'broken' must return a list of one str per row"):
        Chain([_Suffix(" A"), Broken("")])(["one", "two"])


def test_a_fill_that_does_not_fit_the_images_is_found_before_any_step(tmp_path, capsys):
    # (validate cannot know the channels; the run stopped at the step, exit 3, after earlier steps)
    from setforge.tools.cli import main

    path = tmp_path / "run.yaml"
    path.write_text("source: sklearn-digits\npipeline:\n"
                    "  - {augment: affine, params: {fill: [0.1, 0.2]}, copies: 1}\n"
                    "  - {augment: [flip, {name: affine, params: {fill: [0.1, 0.2]}}], copies: 1}\n"
                    "  - {augment: auto-augment, params: {fill: [0.1, 0.2]}, copies: 1}\n"
                    f"evaluate: []\noutput: {{dir: {tmp_path / 'out'}}}\n")
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    said = "fill has 2 values for images with 1 channels (give one value, or one per channel)"
    assert f"pipeline[0].params.fill: {said}" in err and f"pipeline[2].params.fill: {said}" in err
    assert f"pipeline[1].augment: [1] 'affine' params.fill: {said}" in err
    path.write_text(path.read_text().replace("[0.1, 0.2]", "[0.1]"))
    assert main(["run", str(path), "--dry-run"]) == 0
