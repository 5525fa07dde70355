"""Defaults of the command-line tools, chosen so that the README's Quick start (fetch data, extract
features, train, evaluate) finishes within 15 minutes on a 2-core CPU. Measured reasons in README.md."""

DEMO = {
    "input_size": 64,   # Lite0 at 64 px: about 400 images/s on 2 cores (224 px: about 11/s)
    "n_train": 6000,
    "n_cal": 1000,
    "n_test": 2000,
    "n_ood": 1000,
    "width": 512,
    "depth": 6,
    "emb_dim": 512,
    "epochs": 30,
    "lr": 1e-3,
}
