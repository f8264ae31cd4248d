"""Train the crystal diffusion model that lesson 08 samples from in fast mode: perov5_diffusion.pt.

The lesson's full-mode settings (notebooks/08_crystal_diffusion.toml: all of CDVAE's Perov-5 validation
split, 3 787 crystals, as the training split is not in the shared data; 100 epochs, hidden size 96,
T = 200), 3 layers, seed 0, conditioned on ``heat_all`` (heat of formation of the 5-atom cell, eV; see
../shared/data/README.md) with classifier-free guidance (the null token for 10 % of the crystals).
Weights are stored as float16 (about 0.6 MB).
Run from the repository root: ``python data/generative/train_perov5_checkpoint.py``, then
``python data/make_registry.py``.
"""

from pathlib import Path

import torch

from mlcourse import data, generative, lesson


def main():
    torch.manual_seed(0)
    S = lesson.settings("08_crystal_diffusion", "full")
    df = data.load_cdvae("perov_5", "val", n=S.n_train)
    train, heat = list(df.structure), list(df.heat_all)
    model = generative.CrystalDiffusion.from_structures(train, properties=heat, property_name="heat_all (eV per cell)",
                                                        T=S.steps, hidden=S.hidden, n_layers=3, seed=0,
                                                        count_features=0)  # every Perov-5 cell has 5 atoms
    model.fit(train, epochs=S.epochs, batch_size=64, lr=2e-3, properties=heat)
    path = model.save(Path(__file__).with_name("perov5_diffusion.pt"))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB), final loss {model.history.train_loss[-1]:.4f}")


if __name__ == "__main__":
    main()
