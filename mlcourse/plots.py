"""Small plotting helpers shared by the lessons (matplotlib)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def parity(y_true, y_pred, unit: str = "", label: str = "", ax=None):
    """Predicted against true values with the y = x line; returns the matplotlib Axes."""
    ax = ax or plt.subplots(figsize=(4, 4))[1]
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    lo, hi = min(y_true.min(), y_pred.min()), max(y_true.max(), y_pred.max())
    ax.scatter(y_true, y_pred, s=6, alpha=0.5, label=label or None)
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    u = f" ({unit})" if unit else ""
    ax.set(xlabel=f"true{u}", ylabel=f"predicted{u}", aspect="equal")
    if label:
        ax.legend()
    return ax


def structure(atoms, ax=None, rotation: str = "10x,20y,0z", title: str = ""):
    """A picture of an ASE ``Atoms`` (or pymatgen Structure) with its unit cell; returns the Axes."""
    from ase.visualize.plot import plot_atoms

    if not hasattr(atoms, "get_positions"):
        from pymatgen.io.ase import AseAtomsAdaptor

        atoms = AseAtomsAdaptor.get_atoms(atoms)
    ax = ax or plt.subplots(figsize=(3, 3))[1]
    plot_atoms(atoms, ax, rotation=rotation, radii=0.4)
    ax.set_axis_off()
    ax.set_title(title or atoms.get_chemical_formula())
    return ax
