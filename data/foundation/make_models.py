"""The two files lesson 04's fast mode reads instead of running its slowest, largest steps.

- ``chgnet_si_finetuned.pt``: CHGNet 0.3.0 fine-tuned exactly as lesson 04's full mode does it (50 + 10
  training structures drawn with seed 1, 5 epochs, batch 1, lr 3e-4, seed 0), with its history.
- ``sevennet0_si.json``: SevenNet-0's predictions (``foundation.predict``) on the 25 test structures
  (energy eV/atom, forces eV/Å, stress eV/Å³) and its per-atom energies on all 214 training structures
  (for the energy offset, fitted on any subset of them).

Both are what full mode computes live: fine-tuning alone needs ~1 GB beside the rest of the lesson, and
loading SevenNet beside CHGNet another ~0.3 GB, more than Binder's 1 GB. Run from the repository root:
``python data/foundation/make_models.py``, then ``python data/make_registry.py``.
"""

import time
from pathlib import Path

import torch

from mlcourse import data, foundation, lesson, metrics

HERE = Path(__file__).resolve().parent
SEED = 0
S = lesson.settings("04_foundation_potentials", "full")  # the lesson's own table (notebooks/04_foundation_potentials.toml)

torch.manual_seed(SEED)
torch.set_num_threads(2)
train, test = data.load_mlearn("Si", "training"), data.load_mlearn("Si", "test")

t0 = time.time()
calc = foundation.sevennet_calculator()
foundation.save_predictions(HERE / "sevennet0_si.json", test=foundation.predict(calc, test, progress=True, desc="test"),
                            training={"energy": foundation.predict(calc, train, progress=True, desc="train")["energy"]})
print(f"SevenNet-0 predictions in {time.time() - t0:.0f} s")
del calc

t0 = time.time()
ft_idx = foundation.bootstrap_indices(len(train), S.ft_train + S.ft_val, SEED + 1)
ft_model, history = foundation.finetune_chgnet([train[i] for i in ft_idx[:S.ft_train]], [train[i] for i in ft_idx[S.ft_train:]],
                                               epochs=S.ft_epochs, batch_size=1, learning_rate=3e-4, seed=SEED)
seconds = time.time() - t0
foundation.save_chgnet(ft_model, HERE / "chgnet_si_finetuned.pt", history, n_train=S.ft_train, n_val=S.ft_val,
                       epochs=S.ft_epochs, seconds=round(seconds))
print(f"CHGNet fine-tuned in {seconds:.0f} s; test errors:",
      metrics.potential_errors(foundation.predict(foundation.chgnet_calculator(ft_model), test), foundation.labels(test)))
