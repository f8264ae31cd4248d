"""Train the crystal diffusion model that lesson 08 samples from in fast mode: perov5_diffusion.pt.

Same settings as the lesson's full mode: all of CDVAE's Perov-5 validation split (3 787 crystals;
the training split is not in the shared data), 100 epochs, hidden size 96, 3 layers, T = 200,
seed 0. Weights are stored as float16 (about 0.5 MB). About 11 min on one busy CPU core.
Run from the repository root: ``python data/generative/train_perov5_checkpoint.py``, then
``python data/make_registry.py``.
"""

from pathlib import Path

import torch

from mlcourse import data, generative


def main():
    torch.manual_seed(0)
    train = list(data.load_perov5("val").structure)
    model = generative.CrystalDiffusion.from_structures(train, T=200, hidden=96, n_layers=3, seed=0)
    model.fit(train, epochs=100, batch_size=64, lr=2e-3)
    path = model.save(Path(__file__).with_name("perov5_diffusion.pt"))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB), final loss {model.history.train_loss[-1]:.4f}")


if __name__ == "__main__":
    main()
