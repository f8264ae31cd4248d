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


def structure_view(structures, properties: dict | None = None, neighbours: float | None = None,
                   map: tuple[str, str] | None = None, group: str | None = None, title: str = ""):
    """An interactive 3D view (chemiscope) of crystals: turn, zoom, step or play through them.

    ``structures``: ASE ``Atoms`` or pymatgen structures, shown one at a time with a slider and a play
    button (the frames of a band, the steps of a trajectory, a set of crystals). ``properties``:
    per-structure values, {name: list}, shown beside each structure; ``map``: two of their names to plot
    against each other, each point a structure (click one to view it); ``group``: a property of strings
    whose values get their own marker on the map. ``neighbours``: a cutoff in Å; the
    view then highlights the atoms within it of the selected atom. The JavaScript ships in chemiscope's
    wheel, so the view works offline in JupyterLab and on the course website; the structures travel with
    the widget (no kernel is needed to redraw it). Keep a flat picture (``structure``) beside it where
    widgets cannot run (GitHub's notebook preview, a PDF).
    """
    import chemiscope
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = [s if hasattr(s, "get_positions") else AseAtomsAdaptor.get_atoms(s) for s in structures]
    if not frames:
        raise ValueError("structure_view needs at least one structure (got an empty list)")
    props = {"index": list(range(len(frames))), **(properties or {})}
    for name, values in props.items():
        if len(values) != len(frames):
            raise ValueError(f"property {name!r} has {len(values)} values for {len(frames)} structures")
    named = [*(map or ()), *([group] if group else [])]
    if any(m not in props for m in named):
        raise ValueError(f"map {map} or group {group!r} names a property that is not given; "
                         f"properties: {', '.join(props)}")
    environments = chemiscope.all_atomic_environments(frames, cutoff=neighbours) if neighbours else None
    settings = {"structure": [{"unitCell": True, "environments": {"activated": bool(neighbours)}}]}
    if map is not None:
        settings["map"] = {"x": {"property": map[0]}, "y": {"property": map[1]}, **({"symbol": group} if group else {})}
    meta = {"name": title} if title else None
    return chemiscope.show(frames, properties={k: {"target": "structure", "values": list(v)} for k, v in props.items()},
                           metadata=meta, environments=environments, settings=settings,
                           mode="default" if map else "structure", cache_structures=False)
