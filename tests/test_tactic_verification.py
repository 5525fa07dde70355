"""What tactic verification checks (lfdn/tactic_select.h), on the CPU: the non-finite rule of
tactic_error_ratio, the verification cases (in-place residual, rows that need the FP16 guard / GroupNorm
rescaling) through select_tactic_cases with stand-in tactics that are wrong in exactly one way, and the device
scope of every CUDA op-level entry point with a recording stand-in of the CUDA device API (no GPU needed).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

_C = pytest.importorskip("lfdn_edge._C", reason="native module not built")

NAN, INF = math.nan, math.inf


def _ratio(got, ref, scale=None, atol=1e-4):
    got = np.asarray(got, np.float32)
    ref = np.asarray(ref, np.float64)
    scale = np.zeros_like(ref) if scale is None else np.asarray(scale, np.float64)
    return _C.tactic_error_ratio(got, ref, scale, 0.0, atol, 1e-3)


@pytest.mark.parametrize("got,ref,passes", [
    ([NAN, 1.0], [NAN, 1.0], True),          # NaN where the reference is NaN: propagated, as it must be
    ([INF, 1.0], [INF, 1.0], True),          # the same infinity
    ([1.0, 1.0], [NAN, 1.0], False),         # finite where the reference is NaN (used to pass: NaN compares false)
    ([-INF, 1.0], [INF, 1.0], False),        # the other infinity
    ([NAN, 1.0], [INF, 1.0], False),         # NaN where the reference is +inf
    ([NAN, 1.0], [1.0, 1.0], False),         # NaN where the reference is finite
    ([1.0, 5.0], [NAN, 1.0], False),         # element 0 NaN in the reference, element 1 wrong
    ([NAN, 1.00001], [NAN, 1.0], True),      # element 0 NaN in the reference: the others still decide
])
def test_non_finite_rule(got, ref, passes):
    q, worst = _ratio(got, ref)
    assert (q <= 1.0) == passes, (got, ref, q, worst)
    assert not math.isnan(q)


def test_an_overflowed_bound_allows_any_finite_output_but_not_a_non_finite_one():
    assert _ratio([123.0], [1.0], scale=[INF])[0] == 0.0
    assert _ratio([INF], [1.0], scale=[INF])[0] == INF


def test_each_verification_case_catches_the_stand_in_wrong_in_that_case():
    recs = {r["name"]: r for r in _C._select_stand_ins()}
    assert recs["stand_in.correct"]["passed"] and recs["stand_in.correct"]["chosen"]
    assert recs["stand_in.correct"]["max_err_ratio"] < 0.1
    wrong = {"stand_in.wrong_in_place": "in-place residual",
             "stand_in.wrong_on_extreme_rows": "extreme rows",
             "stand_in.nan_output": "not finite"}
    for name, why in wrong.items():
        assert not recs[name]["passed"] and not recs[name]["chosen"], name
        assert why in recs[name]["note"], recs[name]["note"]
    assert "in-place" in recs["stand_in.wrong_in_place"]["worst_case"]  # where the worst error was found
    assert "extreme rows" in recs["stand_in.wrong_on_extreme_rows"]["worst_case"]


# ------------------------------------------------------------------------------------------- device scope
needs_cuda_build = pytest.mark.skipif(not hasattr(_C, "_cuda_device_recorder"),
                                      reason="module built without CUDA (the entry points do not exist)")

ENTRY_POINTS = {  # every op-level CUDA entry point, called with null pointers on device 2 (they fail their
    # parameter checks after the device is set, before any kernel)
    "cuda_noise_inject": lambda d: _C.cuda_noise_inject(0, 2, 4, 1, 0, device=d),
    "cuda_fused_linear": lambda d: _C.cuda_fused_linear(0, 0, 0, 2, 4, 4, device=d),
    "cuda_ddim_score": lambda d: _C.cuda_ddim_score(0, 2, 4, device=d),
    "cuda_tactic_run": lambda d: _C.cuda_tactic_run("cuda.legacy_tile", 0, 0, 0, 2, 4, 4, device=d),
    "cuda_tactic_select": lambda d: _C.cuda_tactic_select(0, 0, 0, 2, 4, 4, device=d),
    "cuda_reference_linear": lambda d: _C.cuda_reference_linear(0, 0, 0, 0, 2, 4, 4, device=d),
    "cuda_tactic_workspace_init": lambda d: _C.cuda_tactic_workspace_init(0, 16, device=d),
}


@needs_cuda_build
@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_entry_point_runs_on_its_tensors_device_and_restores_the_callers(name):
    _C._cuda_device_recorder(True, 0)
    try:
        with pytest.raises(ValueError):  # the null pointers: after the device was made current
            ENTRY_POINTS[name](2)
        assert _C._cuda_device_log() == [("get", 0), ("set", 2), ("set", 0)], name
        _C._cuda_device_recorder(True, 2)  # already current: nothing to set or restore
        with pytest.raises(ValueError):
            ENTRY_POINTS[name](2)
        assert _C._cuda_device_log() == [("get", 2)], name
    finally:
        _C._cuda_device_recorder(False)


@needs_cuda_build
def test_every_cuda_entry_point_of_the_module_is_covered():
    ops = {n for n in dir(_C) if n.startswith("cuda_") and callable(getattr(_C, n))}
    no_device = {"cuda_device_count", "cuda_device_error", "cuda_pack_linear", "cuda_pack_linear_i8",
                 "cuda_linear_tactics", "cuda_tactic_workspace_bytes", "cuda_tactic_tolerance",
                 "cuda_tactic_arch_support"}
    assert ops - no_device == set(ENTRY_POINTS)
