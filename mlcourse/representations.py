"""Lesson 00 family: turning compositions and structures into fixed-length feature vectors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def magpie_features(compositions: Sequence, progress: bool = False) -> pd.DataFrame:
    """Magpie element-property statistics (Ward et al. 2016) via matminer's ``ElementProperty``.

    One row per composition, 132 columns (min, max, range, mean, avg_dev, mode of 22 element
    properties). Elements without tabulated data give NaN, never a dropped row.
    """
    from matminer.featurizers.composition import ElementProperty

    featurizer = ElementProperty.from_preset("magpie")
    featurizer.set_n_jobs(1)  # multiprocessing costs more than it saves at this size
    rows = featurizer.featurize_many(list(compositions), ignore_errors=False, pbar=progress)
    return pd.DataFrame(np.asarray(rows, dtype=float), columns=featurizer.feature_labels())


def sine_coulomb_eigenvalues(structures: Sequence, n_max: int | None = None) -> np.ndarray:
    """Eigenvalues of the sine Coulomb matrix, largest first, (Faber et al. 2015), one row per structure.

    Invariant to atom order, rotation and translation; rows are zero-padded to ``n_max`` sites.
    ValueError naming a disordered structure (one species per site is needed).
    """
    from matminer.featurizers.structure import SineCoulombMatrix

    from .data import check_ordered

    structures = [check_ordered(s, i) for i, s in enumerate(structures)]
    scm = SineCoulombMatrix(flatten=True)
    scm.fit(structures)
    feats = np.array([scm.featurize(s) for s in structures], dtype=float)
    for row, s in zip(feats, structures):  # matminer leaves them in np.linalg.eig's order, which follows the sites
        row[:len(s)] = np.sort(row[:len(s)])[::-1]
    return feats if n_max is None else feats[:, :n_max]
