"""`lfdn-edge train` says which setting measured best for the kind of training images it sees (issue 27: no
single setting won on all three benchmarks; colour sprites favour --stage-weights id-spread). Synthetic images."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from lfdn_edge.advice import colour_share, setting_advice


def _grey(n=40, seed=0):
    g = np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 1), dtype=np.uint8)
    return np.repeat(g, 3, axis=-1)


def _colour(n=40, seed=0):
    im = np.zeros((n, 16, 16, 3), np.uint8)
    im[:, 6:9, 6:9] = (200, 60, 40)  # a small reddish sprite on black (chroma 5.6 if the black counted)
    return im


def test_colour_share():
    assert colour_share(_grey()) == 0.0
    assert colour_share(_colour()) == 1.0
    mixed = np.concatenate([_grey(30), _colour(10)])
    assert colour_share(mixed) == pytest.approx(0.25, abs=0.03)
    # black background does not dilute a sprite's chroma; faint tint on grey is not colour
    tinted = _grey().astype(np.int16)
    tinted[..., 0] += 3
    assert colour_share(np.clip(tinted, 0, 255).astype(np.uint8)) == 0.0
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        colour_share(np.zeros((4, 16, 16), np.uint8))


def test_setting_advice():
    hint = setting_advice(_colour(), None)
    assert hint and "100% of the training images are colour" in hint
    assert "--backbone efficientnet-lite0 --input-size 128 --stage-weights id-spread" in hint
    assert setting_advice(_colour(), "convention", "efficientnet-lite2", 64) == hint
    # part of it chosen: still the whole measured setting; all of it chosen: nothing to say
    assert setting_advice(_colour(), "id-spread") == hint
    assert setting_advice(_colour(), "id-spread", "efficientnet-lite0", 128) is None
    assert setting_advice(_grey(), None) is None               # the defaults stay for grey data
    grey_hint = setting_advice(_grey(), "id-spread")
    assert grey_hint and "grey" in grey_hint and "id-spread measured" in grey_hint and "px" not in grey_hint
    size_hint = setting_advice(_grey(), None, "efficientnet-lite2", 128)
    assert size_hint and "128 px measured below 64 px" in size_hint and "id-spread" not in size_hint


@pytest.mark.parametrize("images, expect", [(_colour(), True), (_grey(), False)])
def test_train_cli_prints_the_hint_before_training(monkeypatch, tmp_path, capsys, images, expect):
    import lfdn_edge.workflow as workflow
    from lfdn_edge.cli import train as train_cli

    class Stop(Exception):
        pass

    def fake_load_benchmark(data, **kw):
        return SimpleNamespace(train=SimpleNamespace(images=images))

    class FakeExtractor:  # reached only after the hint: stop there
        def __init__(self, cfg):
            raise Stop

    monkeypatch.setattr(workflow, "load_benchmark", fake_load_benchmark)
    monkeypatch.setattr(workflow, "MultiLayerFeatures", FakeExtractor)
    with pytest.raises(Stop):
        train_cli.main(["--data", "sprites-ood", "--out", str(tmp_path / "c.pt")])
    err = capsys.readouterr().err
    assert ("--stage-weights id-spread` measured the best" in err) == expect
