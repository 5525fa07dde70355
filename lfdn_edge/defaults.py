"""Every default of lfdn-edge, in one place (a leaf module): the config dataclasses, the library functions,
the data loaders and every command-line option read their defaults from here, so changing one value here
changes it everywhere (and ``--help`` shows it).

The values are chosen so that the README's Quick start (fetch data, extract features, train, evaluate)
finishes within a few minutes on a 2-core CPU; the measured reasons are in docs/QUALITY.md ("Defaults and why").
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------- features
BACKBONE = "efficientnet-lite2"  # decided on two data sets (docs/QUALITY.md)
INPUT_SIZE = 64          # 64 px: Lite0 about 400 images/s on 2 cores, Lite2 about 1.3-1.8x its time (224 px: about 11/s)

# ---------------------------------------------------------------------------------------------- data
DATA = "fmnist-ood"      # the offline benchmark built from Debian packages
N_TRAIN = 6000           # fmnist-ood's own split, and a user source's counts where none are given (N_CAL: held-out
N_CAL = 1000             # ID images for the threshold). The CLI's --n-train/--n-cal/--n-test and the loaders default
N_TEST = 2000            # to None, the data's own split (digits-ood: DIGITS_OOD_SPLIT, sprites-ood: SPRITES_OOD_SPLIT; lfdn_edge.data.resolve_split)
N_OOD = 1000             # at most, per OOD set
DATA_SEED = 0
DIGITS_OOD_SPLIT = (1500, 300, 700)  # digits-ood train / cal / test of its 2500 ID digits (its own split, used for
                                     # every count not given; lfdn_edge.data.digits_ood)
SPRITES_OOD_SPLIT = (1200, 300, 600)  # sprites-ood train / cal / test of its 2410 ID sprites (91 units; whole
                                      # units per split, so the parts overshoot: lfdn_edge.data.sprites_ood)

# ---------------------------------------------------------------------------------------------- model
WIDTH = 512
DEPTH = 6
EMB_DIM = 512
PAPER_MODEL = {"width": 1440, "depth": 16, "emb_dim": 720}  # the paper's size (86.7 M parameters at C=720)

# ---------------------------------------------------------------------------------------------- training
EPOCHS = 30
BATCH_SIZE = 128
LR = 1e-3
WEIGHT_DECAY = 1e-4
EMA_DECAY = 0.9999
EARLY_EPOCH = 0          # 0: automatic snapshot epoch for the LR score
TRAIN_SEED = 0

# ---------------------------------------------------------------------------------------------- scoring
T = 3                    # noise level of the reconstruction (paper code)
STEPS = 3                # DDIM steps
ETA = 1.0
CONVENTION = "project"   # scoring convention: "project" or "authors" (lfdn_edge.diffusion, docs/QUALITY.md)
STAGE_WEIGHTS = None     # MFsim stage weights: None (the convention's), "uniform", "skip-first" or a tuple
NOISE_SEED = 0
TPR = 0.95               # ID acceptance rate of the calibrated threshold
SCORE_TYPE = "mfsim"     # what engines and the Scorer report by default
KNN_K = 10               # k of the kNN baseline

# ---------------------------------------------------------------------------------------------- engines
ENGINE_BATCH = (1, 32, 64)   # MIN, OPT, MAX
WORKSPACE_MB = 1024          # TensorRT builder workspace; modest for Jetson
ONNX_OPSET = 17              # LayerNormalization needs 17
TRT_FLAVOR = "auto"

# ---------------------------------------------------------------------------------------------- bench
BENCH_BATCHES = (1, 8, 64, 256)

# ---------------------------------------------------------------------------------------------- tactics
# Native engines: per (layer, batch bucket) tactic selection at first load (docs/NATIVE.md "Tactics").
TACTICS = "auto"             # "auto": select (or reuse the tactic cache); "off": the fixed default blocking
TACTIC_WARMUP = 1            # untimed runs per candidate before the samples
TACTIC_FIRST_SAMPLES = 3     # timed samples per candidate in round 1 (one run each, after a cache flush)
TACTIC_FINALISTS = 4         # the fastest of round 1 (plus the default blocking) get TACTIC_SAMPLES more
TACTIC_SAMPLES = 9           # round-2 samples; finalists are compared on the median of all their samples
TACTIC_COLD_CACHE = True     # each timed sample one run after a cache flush (weights from DRAM, as in a pass)
TACTIC_BASELINE_MARGIN = 0.02  # another tactic replaces the default blocking only when > 2% faster
# then whole passes confirm each bucket's per-layer choices against the default blocking (tactic_cache.confirm_by_pass)
TACTIC_PASS_ROUNDS = 4         # ABBA rounds of (selected, default) passes at the bucket's upper-bound batch
TACTIC_PASS_MARGIN = 0.03      # the choices stay only when the median pass is > 3% faster than the default's
#   (3 %: identical kernels on one engine measured 0.983-1.014x in the bench, 2026-12-02)
TACTIC_PASS_MIN_SAMPLE_S = 0.02  # a sample is enough passes to last this long (small batches)

# ---------------------------------------------------------------------------------------------- serving (Triton)
SERVE_MODEL_NAME = "lfdn_edge"       # Triton model name (serve and export-triton)
SERVE_HTTP_PORT = 8000               # Triton's own defaults
SERVE_GRPC_PORT = 8001
SERVE_METRICS_PORT = 8002
SERVE_MAX_BATCH = 64                 # largest batch Triton's dynamic batcher forms
SERVE_MAX_QUEUE_DELAY_US = 2000      # how long the batcher waits to fill a batch (microseconds)
SERVE_EXIT_TIMEOUT_S = 5             # at stop, how long Triton waits for in-flight requests (Triton's own: 30)
