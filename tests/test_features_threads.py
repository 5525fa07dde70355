"""Feature extraction from several threads at once (issue 29): MultiLayerFeatures collects the backbone's stage
outputs with forward hooks; each call must get its own stages, whatever other threads extract meanwhile.
Random images (no benchmark data needed) through the real Lite0 at a small input size."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from lfdn_edge import FeatureConfig, MultiLayerFeatures


@pytest.fixture(scope="module")
def extractor():
    return MultiLayerFeatures(FeatureConfig(backbone="efficientnet-lite0", input_size=32))


def _images(n_sets: int, batch: int, size: int = 24) -> list[torch.Tensor]:
    rng = np.random.default_rng(5)
    return [torch.from_numpy(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)) for _ in range(n_sets)]


def _stage_modules(extractor) -> list[torch.nn.Module]:
    """The backbone modules whose outputs the extractor captures (the only ones with forward hooks)."""
    mods = [m for m in extractor.trunk.modules() if m._forward_hooks]
    assert len(mods) == extractor.layout.num_stages
    return mods


def _run_threads(extractor, inputs: list[torch.Tensor]) -> list:
    out: list = [None] * len(inputs)

    def body(i):
        try:
            with torch.inference_mode():
                out[i] = extractor(inputs[i])
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            out[i] = exc

    threads = [threading.Thread(target=body, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "an extraction thread did not finish"
    return out


def test_two_threads_interleaved_inside_the_backbone_get_their_own_features(extractor):
    """Deterministic interleaving: both threads wait for each other right after the first stage's output was
    captured, so each one's remaining stages run while the other's call is under way. With the captures on
    the module (self._captured, before issue 29) the second call threw away the first one's list and both
    calls appended to one: a RuntimeError ("produced N stage outputs") or another input's features."""
    inputs = _images(2, 3)
    with torch.inference_mode():
        expected = [extractor(x) for x in inputs]
    barrier = threading.Barrier(2, timeout=30)

    def wait_for_the_other(module, inputs, output):  # returns None: the output stays as it is
        barrier.wait()

    handle = _stage_modules(extractor)[0].register_forward_hook(wait_for_the_other)
    try:
        got = _run_threads(extractor, inputs)
    finally:
        handle.remove()
    for g, e in zip(got, expected):
        assert not isinstance(g, BaseException), repr(g)
        assert torch.equal(g, e)


def test_many_threads_extract_like_one_thread(extractor):
    """No injected waits: 8 threads x different images at once give exactly the sequential features."""
    inputs = _images(8, 2)
    with torch.inference_mode():
        expected = [extractor(x) for x in inputs]
    for _ in range(3):
        got = _run_threads(extractor, inputs)
        for g, e in zip(got, expected):
            assert not isinstance(g, BaseException), repr(g)
            assert torch.equal(g, e)

