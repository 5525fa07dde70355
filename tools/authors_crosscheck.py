"""Cross-check of the "authors" scoring convention against the authors' own code (github xbyym/DLSR).

Runs the authors' DDIM chain (``ldm/models/diffusion/ddim.py``: ``DDIMSampler.sample`` with ``ldm_steps`` =
T = 100 and ``subset_timesteps_num`` = k, as their ``test_mse_mfsim.py`` does) and their MFsim / MSE
(``ldm/util.py: calculate_similarity``) on their own LFDN (``ldm/modules/diffusionmodules/latent.py``) and
DDPM schedule code (``ldm/models/diffusion/ddpm.py``), with this project's LFDN weights mapped one to one,
beside :class:`lfdn_edge.reference.ReferenceScorer` with ``ScoreConfig(convention="authors")``, on the same
features and the same fixed noise (the project's counter-based noise injected where their code draws
``torch.randn``), and prints the largest differences. Nothing of their code is copied: it is imported from the
checkout given on the command line. Their modules that need a GPU or packages unrelated to the chain
(pytorch_lightning, omegaconf, torchvision, einops, their image encoder) are replaced by stand-ins here, in
this process only; ``.cuda()`` becomes a no-op so that everything runs on the CPU in float32.

    git clone https://github.com/xbyym/DLSR /tmp/DLSR      # or any checkout of it
    python tools/authors_crosscheck.py --dlsr /tmp/DLSR [--ckpt runs/demo/ckpt.pt] [--json out.json]

Without ``--ckpt`` a small random LFDN (C=64 in 4 stages, W=64, depth 2) is used; with it, the checkpoint's
EMA weights and (``--features``, an .npy of feature vectors) its features, else random standardised vectors.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch


def _stub_module(name: str, **attrs) -> None:
    if name in sys.modules:
        return
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(mod, k, v)
    sys.modules[name] = mod
    parent, _, child = name.rpartition(".")
    if parent:
        _stub_module(parent)
        setattr(sys.modules[parent], child, mod)


def _install_stand_ins() -> None:
    """Stand-ins for imports of their modules that the scoring chain never calls."""
    try:
        import einops  # noqa: F401
    except ImportError:
        _stub_module("einops", rearrange=None, repeat=None)
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        _stub_module("omegaconf", OmegaConf=None)
    _stub_module("pytorch_lightning.utilities.distributed", rank_zero_only=lambda f: f)
    try:
        import torchvision.utils  # noqa: F401
    except Exception:
        _stub_module("torchvision.utils", make_grid=None)
    _stub_module("Pre_train_model.models.model_helper", ModelHelper=None)
    try:
        import tqdm  # noqa: F401
    except ImportError:
        _stub_module("tqdm", tqdm=lambda it, **k: it)


@contextlib.contextmanager
def _cpu_only():
    """Their sampler calls ``.cuda()`` on every buffer: make it the identity while it runs."""
    saved = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.Tensor.cuda = saved


def load_authors(dlsr: Path):
    """Their ddim, ddpm and util modules, imported from the checkout ``dlsr``."""
    dlsr = Path(dlsr).resolve()
    for f in ("ldm/models/diffusion/ddim.py", "ldm/models/diffusion/ddpm.py", "ldm/util.py",
              "ldm/modules/diffusionmodules/latent.py"):
        if not (dlsr / f).is_file():
            raise FileNotFoundError(f"{dlsr} is not a checkout of xbyym/DLSR (no {f})")
    _install_stand_ins()
    sys.path.insert(0, str(dlsr))
    ddim = importlib.import_module("ldm.models.diffusion.ddim")
    ddpm = importlib.import_module("ldm.models.diffusion.ddpm")
    util = importlib.import_module("ldm.util")
    return ddim, ddpm, util


def map_weights(model) -> dict:
    """The project's LFDN state dict under the authors' LFDN names (``diffusion_model`` of their wrapper)."""
    sd = model.state_dict()
    out = {"input_proj.1.weight": sd["inp.weight"], "input_proj.1.bias": sd["inp.bias"],
           "time_embed.0.weight": sd["time_embed.0.weight"], "time_embed.0.bias": sd["time_embed.0.bias"],
           "time_embed.2.weight": sd["time_embed.2.weight"], "time_embed.2.bias": sd["time_embed.2.bias"],
           "out.0.weight": sd["out_norm.weight"], "out.0.bias": sd["out_norm.bias"],
           "out.2.weight": sd["out.weight"], "out.2.bias": sd["out.bias"]}
    for i in range(model.config.depth):
        p, q = f"blocks.{i}.", f"res_blocks.{i}."
        for mine, theirs in (("norm1", "in_layers.0"), ("fc1", "in_layers.2"), ("emb", "emb_layers.1"),
                             ("norm2", "out_layers.0"), ("fc2", "out_layers.3")):
            out[q + theirs + ".weight"] = sd[p + mine + ".weight"]
            out[q + theirs + ".bias"] = sd[p + mine + ".bias"]
    return out


def authors_scores(mods, model, schedule_cfg, score_cfg, layout, z: torch.Tensor) -> dict:
    """Their chain and scores for features ``z`` (N, C) with the project's LFDN ``model`` mapped in."""
    from lfdn_edge.diffusion import NoisePlan

    ddim, ddpm, util = mods
    c = model.config
    unet = {"target": "ldm.modules.diffusionmodules.latent.LFDN",
            "params": {"in_channels": c.in_dim, "time_embed_dim": c.emb_dim, "model_channels": c.width,
                       "bottleneck_channels": c.width, "out_channels": c.in_dim, "num_res_blocks": c.depth}}
    net = ddpm.DDPM(unet, timesteps=schedule_cfg.T, linear_start=schedule_cfg.beta_start,
                    linear_end=schedule_cfg.beta_end, parameterization="x0", ckpt_path=None, use_ema=False)
    net.model.diffusion_model.load_state_dict(map_weights(model), strict=True)
    net.eval()
    # their LFDM subclass's two methods the sampler calls, bound to the plain DDPM
    net.apply_model = types.MethodType(ddpm.LFDM.apply_model, net)
    net._predict_eps_from_xstart = types.MethodType(ddpm.LFDM._predict_eps_from_xstart, net)
    noise = NoisePlan(score_cfg, c.in_dim)
    q_sample = net.q_sample
    net.q_sample = lambda x_start, t, noise_=None: q_sample(x_start, t, noise=noise.eps[None, :].expand_as(x_start))
    draws = iter(list(noise.step_noise) + [torch.zeros(c.in_dim)] * 2)
    ddim.noise_like = lambda shape, device, repeat=False: next(draws)[None, :].expand(shape).to(device)
    sampler = ddim.DDIMSampler(net, subset_timesteps_num=int(score_cfg.steps))
    sampler.register_buffer = types.MethodType(lambda self, name, attr: setattr(self, name, attr), sampler)
    ends = [int(o) for o in layout.offsets[1:]]
    with _cpu_only(), torch.no_grad():
        rec, _ = sampler.sample(schedule_cfg.T, batch_size=z.shape[0], shape=[c.in_dim, 1, 1], conditioning=None,
                                x0=z, eta=float(score_cfg.eta), verbose=False)
        rec = rec.reshape(z.shape[0], c.in_dim)
        mfsim = util.calculate_similarity(rec, z, ends, "MFsim")
        mse = util.calculate_similarity(rec, z, ends, "MSE")
    return {"recon": rec, "mfsim": mfsim, "mse_sum": mse}


def crosscheck(dlsr, model=None, layout=None, z=None, t: int = 3, steps: int = 3, seed: int = 0) -> dict:
    """Max |difference| of reconstruction, MFsim and MSE between their code and the project's "authors"
    convention. Defaults: a small random LFDN and random standardised features."""
    from lfdn_edge.diffusion import DiffusionConfig, Schedule
    from lfdn_edge.features import FeatureLayout
    from lfdn_edge.model import LFDN, LFDNConfig
    from lfdn_edge.reference import ReferenceScorer, ScoreConfig

    mods = load_authors(Path(dlsr))
    if model is None:
        torch.manual_seed(seed)
        layout = FeatureLayout((8, 16, 16, 24))
        model = LFDN(LFDNConfig(in_dim=layout.dim, width=64, depth=2, emb_dim=64))
        with torch.no_grad():  # non-zero output layers, so that the model is not an identity at init
            for b in model.blocks:
                b.fc2.weight.normal_(0, 0.05)
            model.out.weight.normal_(0, 0.05)
    if z is None:
        g = torch.Generator().manual_seed(seed + 1)
        z = torch.randn(256, layout.dim, generator=g)
    z = torch.as_tensor(z, dtype=torch.float32)
    model = model.eval()
    dcfg = DiffusionConfig()
    scfg = ScoreConfig(t=t, steps=steps, eta=1.0, seed=seed, convention="authors")
    if t != steps:
        raise ValueError("the authors' chain with ldm_steps = T noises to level k (subset_timesteps_num): use t = steps")
    theirs = authors_scores(mods, model, dcfg, scfg, layout, z)
    ref = ReferenceScorer(model, layout, Schedule(dcfg), scfg)
    rec = ref.final.reconstruct(z)
    ours = ref.scores(z)

    def mx(a, b):
        return float((torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)).abs().max())

    return {"n": int(z.shape[0]), "dim": int(layout.dim), "t": t, "steps": steps,
            "recon_max_abs_diff": mx(rec, theirs["recon"]),
            "recon_max_abs": float(rec.abs().max()),
            "mfsim_max_abs_diff": mx(ours["mfsim"], theirs["mfsim"]),
            "mse_max_abs_diff": mx(ours["mse"] * layout.dim, theirs["mse_sum"]) / layout.dim,
            "project_vs_authors_mfsim_max_abs_diff": mx(
                ReferenceScorer(model, layout, Schedule(dcfg), ScoreConfig(t=t, steps=steps, seed=seed)).scores(z)["mfsim"],
                theirs["mfsim"])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dlsr", required=True, help="path of a checkout of github xbyym/DLSR")
    p.add_argument("--ckpt", help="an lfdn-edge checkpoint (default: a small random LFDN)")
    p.add_argument("--features", help=".npy of feature vectors for --ckpt (default: random standardised ones)")
    p.add_argument("--t", type=int, default=3, help="noise level = DDIM steps (the authors' subset_timesteps_num)")
    p.add_argument("--json", help="write the differences here")
    args = p.parse_args(argv)
    model = layout = z = None
    if args.ckpt:
        from lfdn_edge.checkpoint import Checkpoint

        ck = Checkpoint.load(args.ckpt)
        model, layout = ck.build_model("ema"), ck.layout
        if args.features:
            z = np.load(args.features)[:512]
        else:
            z = torch.randn(256, layout.dim, generator=torch.Generator().manual_seed(1))
    out = crosscheck(args.dlsr, model, layout, z, t=args.t, steps=args.t)
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
