"""The maths of DLSR against hand computations: schedule, noising, DDIM, standardisation, MFsim, noise."""

import math

import numpy as np
import pytest
import torch

from lfdn_edge.diffusion import DiffusionConfig, NoisePlan, Schedule, ddim_levels, ddim_step, q_sample
from lfdn_edge.features import FeatureLayout, standardise
from lfdn_edge.model import LFDN, LFDNConfig, sinusoidal_embedding
from lfdn_edge.noise import gaussian_noise, philox4x32_10
from lfdn_edge.reference import Reconstructor, ReferenceScorer, ScoreConfig, score_terms


def test_schedule_matches_design():
    s = Schedule()
    assert s.T == 100
    assert s.betas[0] == pytest.approx(0.0015, rel=1e-12)
    assert s.betas[-1] == pytest.approx(0.0195, rel=1e-12)
    # betas are squares of a linear ramp of square roots
    r = np.sqrt(s.betas)
    assert np.allclose(np.diff(r), (math.sqrt(0.0195) - math.sqrt(0.0015)) / 99, rtol=1e-10)
    assert s.alpha_bar[0] == pytest.approx(1 - 0.0015)
    assert s.alpha_bar[3] == pytest.approx(np.prod(1 - s.betas[:4]))
    assert np.all(np.diff(s.alpha_bar) < 0)


def test_schedule_rejects_bad_config():
    with pytest.raises(ValueError, match="T must be"):
        DiffusionConfig(T=1)
    with pytest.raises(ValueError, match="beta"):
        DiffusionConfig(beta_start=0.1, beta_end=0.01)
    with pytest.raises(ValueError, match="noise level"):
        Schedule().check_level(100)


def test_q_sample_and_one_ddim_step_by_hand():
    ab_t, ab_n = 0.9, 0.95
    z0 = torch.tensor([[1.0, -2.0]])
    eps = torch.tensor([[0.5, 0.25]])
    zt = q_sample(z0, ab_t, eps)
    assert torch.allclose(zt, math.sqrt(0.9) * z0 + math.sqrt(0.1) * eps)
    x0_hat = torch.tensor([[0.8, -1.9]])
    noise = torch.tensor([[0.3, -0.7]])
    eta = 1.0
    sigma = eta * math.sqrt((1 - ab_n) / (1 - ab_t)) * math.sqrt(1 - ab_t / ab_n)
    eps_hat = (zt - math.sqrt(ab_t) * x0_hat) / math.sqrt(1 - ab_t)
    expect = math.sqrt(ab_n) * x0_hat + math.sqrt(1 - ab_n - sigma**2) * eps_hat + sigma * noise
    got = ddim_step(zt, x0_hat, ab_t, ab_n, eta, noise)
    assert torch.allclose(got, expect, atol=1e-6)
    # eta = 0: deterministic DDIM, no noise needed; a perfect x0 prediction maps z_t to z_{t'} exactly
    got0 = ddim_step(zt, z0, ab_t, ab_n, 0.0, None)
    assert torch.allclose(got0, q_sample(z0, ab_n, eps), atol=1e-6)
    with pytest.raises(ValueError, match="noise"):
        ddim_step(zt, x0_hat, ab_t, ab_n, 1.0, None)


def test_ddim_levels():
    assert ddim_levels(3, 3) == [3, 2, 0]
    assert ddim_levels(3, 1) == [3]
    assert ddim_levels(10, 4) == [10, 7, 3, 0]
    assert ddim_levels(3, 4) == [3, 2, 1, 0]
    with pytest.raises(ValueError, match="cannot exceed"):
        ddim_levels(2, 4)
    with pytest.raises(ValueError):
        ScoreConfig(t=3, steps=0)


def test_standardise_per_stage_by_hand():
    f = torch.tensor([[1.0, 2.0, 3.0, 6.0]])
    mean, var = 3.0, np.var([1, 2, 3, 6])
    expect = (f - mean) / math.sqrt(var + 1e-5)
    assert torch.allclose(standardise(f), expect, atol=1e-6)
    s = standardise(torch.randn(5, 40) * 7 + 3)
    assert torch.allclose(s.mean(1), torch.zeros(5), atol=1e-5)
    assert torch.allclose(s.std(1, unbiased=False), torch.ones(5), atol=1e-4)


def test_mfsim_and_mse_by_hand_over_all_stages():
    layout = FeatureLayout((2, 3))
    z0 = torch.tensor([[1.0, 0.0, 1.0, 2.0, 2.0]])
    zr = torch.tensor([[0.0, 1.0, 1.0, 2.0, 2.0]])
    terms = score_terms(z0, zr, layout)
    # stage 1: orthogonal (cos 0); stage 2: identical (cos 1); MFsim = -(0 + 1)/2 over ALL stages
    assert terms["mfsim"].item() == pytest.approx(-0.5)
    assert terms["stage_cos"].tolist() == [[pytest.approx(0.0), pytest.approx(1.0)]]
    assert terms["mse"].item() == pytest.approx(2.0 / 5.0)


def test_philox_known_answers():
    # Known-answer vectors of Philox-4x32-10 (Random123 kat_vectors)
    assert philox4x32_10(np.zeros(4, np.uint32), (0, 0)).tolist() == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    assert philox4x32_10(np.full(4, 0xFFFFFFFF, np.uint32), (0xFFFFFFFF, 0xFFFFFFFF)).tolist() == [
        0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    ctr = np.array([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], np.uint32)
    assert philox4x32_10(ctr, (0xA4093822, 0x299F31D0)).tolist() == [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


def test_gaussian_noise_is_counter_based_and_normal():
    a = gaussian_noise(7, 0, 50_000)
    assert a.dtype == np.float32
    assert abs(a.mean()) < 0.02 and abs(a.std() - 1) < 0.02
    assert np.array_equal(gaussian_noise(7, 0, 100), a[:100])          # prefix property: index-keyed
    assert not np.array_equal(gaussian_noise(7, 1, 100), a[:100])      # streams differ
    assert not np.array_equal(gaussian_noise(8, 0, 100), a[:100])      # seeds differ
    keyed = gaussian_noise(7, 0, 100, image_keys=[0, 5, 2**40])
    assert np.array_equal(keyed[0], a[:100]) and not np.array_equal(keyed[1], keyed[2])
    with pytest.raises(ValueError):
        gaussian_noise(-1, 0, 3)


def test_native_noise_matches_python_bit_for_bit():
    _C = pytest.importorskip("lfdn_edge._C", reason="native module not built")
    keys = np.array([0, 3, 2**33 + 1], dtype=np.uint64)
    z0 = np.linspace(-1, 1, 3 * 257, dtype=np.float32).reshape(3, 257)
    got = _C.noise_inject(z0, 2**35 + 9, 4, 0.5, 2.0, -1, keys)
    eps = gaussian_noise(2**35 + 9, 4, 257, image_keys=keys)
    assert np.array_equal(_C.noise_inject(None, 2**35 + 9, 4, 0.0, 1.0, 257, keys), eps)
    # 0.5 * z0 and 2 * eps are exact in float32, so a*z0 + b*eps has one rounding with or without FMA: bit-exact
    assert np.array_equal(got, np.float32(0.5) * z0 + np.float32(2.0) * eps)
    with pytest.raises(ValueError, match="2-D"):
        _C.noise_inject(np.zeros(3, np.float32), 0, 0)


def test_lfdn_paper_size_parameter_count_and_zero_init():
    m = LFDN(LFDNConfig(in_dim=720, width=1440, depth=16, emb_dim=720))
    assert m.num_parameters() == 86_740_560  # the paper's 86.7 M
    small = LFDN(LFDNConfig(in_dim=12, width=8, depth=2, emb_dim=4))
    # zero-initialised second Linear: every block starts as the identity
    x = torch.randn(3, 8)
    emb = small.embed(torch.tensor([5]))
    assert torch.equal(small.blocks[0](x, emb), x)
    with pytest.raises(ValueError, match="expects features"):
        small(torch.randn(3, 11), 2)


def test_sinusoidal_embedding_by_hand():
    e = sinusoidal_embedding(torch.tensor([2.0]), 4)
    f = [1.0, 10000 ** (-1 / 2)]
    assert torch.allclose(e, torch.tensor([[math.cos(2 * f[0]), math.cos(2 * f[1]), math.sin(2 * f[0]),
                                            math.sin(2 * f[1])]]), atol=1e-6)


def _random_lfdn(seed: int, in_dim: int = 16) -> LFDN:
    torch.manual_seed(seed)
    model = LFDN(LFDNConfig(in_dim=in_dim, width=32, depth=2, emb_dim=16))
    for p in model.parameters():  # give the zero-initialised layers weights too
        torch.nn.init.normal_(p, std=0.2)
    return model


def test_scores_and_lr_do_not_depend_on_the_batch():
    """Two different models (final and early), so LR = mse(early) - mse(final) is non-zero, and every score
    of an item, LR included, is the same alone, in a batch, in another order and in another batch split."""
    layout = FeatureLayout((5, 7, 4))
    final, early = _random_lfdn(0), _random_lfdn(1)
    config = ScoreConfig(t=5, steps=3, seed=11)
    scorer = ReferenceScorer(final, layout, Schedule(), config, early_model=early)
    z = standardise(torch.randn(9, 16, generator=torch.Generator().manual_seed(2)))
    full = scorer.scores(z)
    # LR is the difference of the two models' MSEs (computed here by two single-model scorers)
    mse_final = ReferenceScorer(final, layout, Schedule(), config).scores(z)["mse"]
    mse_early = ReferenceScorer(early, layout, Schedule(), config).scores(z)["mse"]
    np.testing.assert_allclose(full["lr"], mse_early - mse_final, rtol=1e-5, atol=1e-7)
    assert np.all(np.abs(full["lr"]) > 1e-3), full["lr"]   # non-zero for every item: the check below has teeth
    assert np.ptp(full["lr"]) > 1e-3                          # and not one constant
    # LR is a difference of two MSEs: its rounding follows their size (torch's GEMM rounds differently per
    # batch size, ~1e-7 relative on each MSE), so its tolerance is relative to them, not to the difference
    atol = {"mfsim": 1e-7, "mse": 1e-7, "lr": 1e-5 * float(np.max(np.abs(mse_early)))}
    assert atol["lr"] < 1e-2 * np.min(np.abs(full["lr"]))  # still far below every LR value
    for i in (0, 4, 8):
        one = scorer.scores(z[i:i + 1])
        for k in ("mfsim", "mse", "lr"):
            assert one[k][0] == pytest.approx(full[k][i], rel=1e-5, abs=atol[k]), (k, i)
    shuffled = scorer.scores(z.flip(0))
    split = scorer.scores(z, batch_size=4)
    for k in ("mfsim", "mse", "lr"):
        np.testing.assert_allclose(shuffled[k][::-1], full[k], rtol=1e-5, atol=atol[k], err_msg=k)
        np.testing.assert_allclose(split[k], full[k], rtol=1e-5, atol=atol[k], err_msg=k)
    again = scorer.scores(z)
    for k in ("mfsim", "mse", "lr"):
        assert np.array_equal(again[k], full[k]), k  # deterministic


class _OracleLFDN(torch.nn.Module):
    """A perfect x0 predictor: ignores its input and returns the stored z0; records (x, t) of every call."""

    def __init__(self, z0: torch.Tensor):
        super().__init__()
        self.z0 = z0
        self.config = LFDNConfig(in_dim=z0.shape[1], width=8, depth=1, emb_dim=8)
        self.calls: list[tuple[torch.Tensor, list[int]]] = []

    def forward(self, x, t):
        self.calls.append((x.clone(), torch.as_tensor(t).flatten().tolist()))
        return self.z0.clone()


@pytest.mark.parametrize("t,steps", [(3, 3), (10, 4), (7, 1), (5, 6), (40, 5)])
def test_ddim_chain_with_a_perfect_model_follows_the_forward_marginals(t, steps):
    """Oracle of the DDIM chain (eta = 0): with a model that predicts z0 exactly, the input x at every level l
    is q_sample(z0, alpha_bar[l], eps) with the same eps (NoisePlan stream 0), the levels are
    round(linspace(t, 0, k)), and the chain returns z0. A noising/update index off by one breaks this."""
    schedule = Schedule()
    ab = schedule.alpha_bar
    z0 = standardise(torch.randn(6, 24, generator=torch.Generator().manual_seed(t * 10 + steps)))
    config = ScoreConfig(t=t, steps=steps, eta=0.0, seed=5)
    oracle = _OracleLFDN(z0)
    out = Reconstructor(oracle, schedule, config).reconstruct(z0)
    levels = [call[1] for call in oracle.calls]
    want_levels = [int(round(v)) for v in np.linspace(t, 0, steps)] if steps > 1 else [t]
    assert levels == [[lv] for lv in want_levels], levels
    assert want_levels == ddim_levels(t, steps)
    eps = NoisePlan(config, 24).eps
    assert np.array_equal(eps.numpy(), gaussian_noise(5, 0, 24))
    for (x, (level,)) in oracle.calls:
        want = q_sample(z0.double(), float(ab[level]), eps.double()[None, :])
        torch.testing.assert_close(x.double(), want, rtol=0, atol=2e-6, msg=lambda m: f"level {level}: {m}")
    torch.testing.assert_close(out, z0, rtol=0, atol=0)  # the last x0 prediction is the reconstruction


def test_ddim_chain_with_a_perfect_model_and_eta_1_adds_each_updates_own_noise():
    """eta = 1, with a model that predicts z0 exactly: every x is sqrt(ab_l) z0 + sqrt(1 - ab_l) e_l with a unit
    noise mix e_l; e at the first level is eps (stream 0) and each update i mixes in its own NoisePlan stream
    i + 1: e' = (sqrt(1 - ab' - sigma^2) e + sigma noise_i) / sqrt(1 - ab'), sigma from that update's levels."""
    schedule = Schedule()
    ab = schedule.alpha_bar
    z0 = standardise(torch.randn(4, 24, generator=torch.Generator().manual_seed(3)))
    config = ScoreConfig(t=10, steps=4, eta=1.0, seed=9)
    oracle = _OracleLFDN(z0)
    out = Reconstructor(oracle, schedule, config).reconstruct(z0)
    levels = [call[1][0] for call in oracle.calls]
    assert levels == [10, 7, 3, 0]
    z = z0.double()
    e = torch.from_numpy(gaussian_noise(9, 0, 24)).double()[None, :]
    for i, level in enumerate(levels):
        if i > 0:
            cur = levels[i - 1]
            sigma = math.sqrt((1 - ab[level]) / (1 - ab[cur])) * math.sqrt(1 - ab[cur] / ab[level])
            assert sigma > 1e-3
            noise = torch.from_numpy(gaussian_noise(9, i, 24)).double()[None, :]
            e = (math.sqrt(1 - ab[level] - sigma**2) * e + sigma * noise) / math.sqrt(1 - ab[level])
        want = math.sqrt(ab[level]) * z + math.sqrt(1 - ab[level]) * e
        torch.testing.assert_close(oracle.calls[i][0].double(), want, rtol=0, atol=2e-6,
                                   msg=lambda m: f"level {level} (call {i}): {m}")
    torch.testing.assert_close(out, z0, rtol=0, atol=0)


def test_scorer_rejects_bad_features():
    layout = FeatureLayout((4, 4))
    model = LFDN(LFDNConfig(in_dim=8, width=8, depth=1, emb_dim=8))
    scorer = ReferenceScorer(model, layout, Schedule(), ScoreConfig())
    with pytest.raises(ValueError, match=r"shape \(N, 8\)"):
        scorer.scores(torch.zeros(3, 9))
    with pytest.raises(ValueError, match="empty batch"):
        scorer.scores(torch.zeros(0, 8))
    bad = torch.zeros(4, 8)
    bad[2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or Inf \(rows \[2\]"):
        scorer.scores(bad)
    with pytest.raises(TypeError, match="floating"):
        scorer.scores(torch.zeros(2, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="layout"):
        ReferenceScorer(model, FeatureLayout((4, 5)), Schedule(), ScoreConfig())


# ------------------------------------------------------------------------------ the authors' convention
class _FixedMap(torch.nn.Module):
    """A deterministic stand-in for the LFDN whose output depends on x and the level: y = tanh(x A) + 0.1 level."""

    def __init__(self, dim: int):
        super().__init__()
        self.a = torch.randn(dim, dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64) / dim**0.5
        self.config = LFDNConfig(in_dim=dim, width=8, depth=1, emb_dim=8)
        self.levels = []

    def forward(self, x, t):
        level = int(torch.as_tensor(t).flatten()[0])
        self.levels.append(level)
        return (torch.tanh(x.double() @ self.a) + 0.1 * level).to(x.dtype)


@pytest.mark.parametrize("t,steps", [(3, 3), (5, 3), (6, 4), (1, 1)])
def test_authors_chain_is_their_three_lines_by_hand(t, steps):
    """The authors' DDIM chain (xbyym/DLSR ddim.py, ldm_steps = T), written out in float64 as their code does:
    noise with ab[t]; at each level l: y = model(x, l), e = (x / sqrt(ab[l]) - y) / sqrt(1 / ab[l] - 1),
    p = (x - sqrt(1 - a_t) e) / sqrt(a_t), x = sqrt(a_prev) p + sqrt(1 - a_prev - s^2) e + s noise, with
    a_t = ab[l - 1], a_prev = ab[l' - 1] (ab[0] after the last level), s = eta sqrt((1 - a_prev) / (1 - a_t)
    (1 - a_t / a_prev)); the result is the last x. The project's chain folds this into coefficient rows."""
    schedule = Schedule()
    ab = schedule.alpha_bar
    dim = 12
    z0 = standardise(torch.randn(5, dim, generator=torch.Generator().manual_seed(t)))
    config = ScoreConfig(t=t, steps=steps, eta=1.0, seed=3, convention="authors")
    model = _FixedMap(dim)
    out = Reconstructor(model, schedule, config).reconstruct(z0)
    levels = model.levels
    assert levels == ([t, 2, 1] if (t, steps) == (3, 3) else [int(round(v)) for v in np.linspace(t, 1, steps)])
    assert levels[-1] == 1
    plan = NoisePlan(config, dim)
    x = math.sqrt(ab[t]) * z0.double() + math.sqrt(1 - ab[t]) * plan.eps.double()[None, :]
    for i, level in enumerate(levels):
        y = (torch.tanh(x @ model.a) + 0.1 * level)
        e = (x / math.sqrt(ab[level]) - y) / math.sqrt(1 / ab[level] - 1)
        a_t = ab[level - 1]
        a_prev = ab[levels[i + 1] - 1] if i + 1 < len(levels) else ab[0]
        s = math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        p = (x - math.sqrt(1 - a_t) * e) / math.sqrt(a_t)
        noise = plan.step_noise[i].double()[None, :] if i + 1 < len(levels) else torch.zeros(1, dim, dtype=torch.float64)
        x = math.sqrt(a_prev) * p + math.sqrt(1 - a_prev - s**2) * e + s * noise
    torch.testing.assert_close(out.double(), x, rtol=0, atol=2e-5)
    # the project's chain is a different function of the same input
    proj = Reconstructor(_FixedMap(dim), schedule, ScoreConfig(t=t, steps=steps, eta=1.0, seed=3)).reconstruct(z0)
    assert (proj.double() - x).abs().max() > 1e-2


def test_convention_levels_weights_and_validation():
    from lfdn_edge.diffusion import DdimPlan, chain_levels
    from lfdn_edge.reference import stage_weights

    assert chain_levels(3, 3, "authors") == [3, 2, 1] and chain_levels(3, 3, "project") == [3, 2, 0]
    assert chain_levels(9, 3, "authors") == [9, 5, 1] and chain_levels(1, 1, "authors") == [1]
    for t, k in ((3, 4), (3, 1), (0, 1)):
        with pytest.raises(ValueError, match="authors' convention"):
            ScoreConfig(t=t, steps=k, convention="authors")
    with pytest.raises(ValueError, match="convention"):
        ScoreConfig(convention="paper")
    assert stage_weights(ScoreConfig(convention="authors"), 5) == (0.0, 0.25, 0.25, 0.25, 0.25)
    assert stage_weights(ScoreConfig(), 4) == (0.25,) * 4
    assert stage_weights(ScoreConfig(stage_weights=(0.5, 0.5)), 2) == (0.5, 0.5)
    assert stage_weights(ScoreConfig(convention="project", stage_weights="skip-first"), 3) == (0.0, 0.5, 0.5)
    assert stage_weights(ScoreConfig(convention="authors", stage_weights="uniform"), 2) == (0.5, 0.5)
    with pytest.raises(ValueError, match="stage_weights must be one of"):
        ScoreConfig(stage_weights="last")
    for bad in ((0.5, 0.6), (-0.5, 1.5), ()):
        with pytest.raises(ValueError, match="stage_weights"):
            ScoreConfig(stage_weights=bad)
    with pytest.raises(ValueError, match="3 entries"):
        stage_weights(ScoreConfig(stage_weights=(0.2, 0.3, 0.5)), 5)
    # every plan has one row per model evaluation; the last one is deterministic; project's is the identity on y
    for conv in ("project", "authors"):
        plan = DdimPlan(Schedule(), ScoreConfig(t=5, steps=3, convention=conv))
        assert len(plan.updates) == 3 and plan.updates[-1][4] == 0.0
    assert DdimPlan(Schedule(), ScoreConfig()).updates[-1][2:] == (1.0, 0.0, 0.0)
    # the authors' last update (a_t = a_prev = ab[0]) returns x itself: c_x0 = sqrt(ab[1]), c_eps = sqrt(1 - ab[1])
    sa, s1, c_x0, c_eps, sigma = DdimPlan(Schedule(), ScoreConfig(convention="authors")).updates[-1]
    assert (c_x0, c_eps, sigma) == pytest.approx((sa, s1, 0.0), abs=1e-12)


def test_authors_mfsim_skips_the_first_stage():
    layout = FeatureLayout((4, 4, 4))
    model = LFDN(LFDNConfig(in_dim=12, width=8, depth=1, emb_dim=8))
    z = standardise(torch.randn(6, 12, generator=torch.Generator().manual_seed(2)))
    s = ReferenceScorer(model, layout, Schedule(), ScoreConfig(convention="authors")).scores(z)
    np.testing.assert_allclose(s["mfsim"], -s["stage_cos"][:, 1:].mean(axis=1), rtol=1e-6)
    p = ReferenceScorer(model, layout, Schedule(), ScoreConfig()).scores(z)
    np.testing.assert_allclose(p["mfsim"], -p["stage_cos"].mean(axis=1), rtol=1e-6)
