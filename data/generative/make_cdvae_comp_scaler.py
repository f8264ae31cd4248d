"""Write cdvae_comp_scaler.json: CDVAE's Magpie-feature scaler (CompScalerMeans, CompScalerStds).

CDVAE's coverage test standardises composition fingerprints with these fixed numbers before
comparing them with delta_comp (compute_metrics.py -> eval_utils.CompScaler), so lesson 08 needs
the same numbers. They live in cdvae/common/constants.py (MIT licence) at the commit below. Needs
network access: ``python data/generative/make_cdvae_comp_scaler.py``, then
``python data/make_registry.py``.
"""

import ast
import json
import urllib.request
from pathlib import Path

COMMIT = "73874c48a46b74fedaa161fdac512b0a75e2d336"
RAW = f"https://raw.githubusercontent.com/txie-93/cdvae/{COMMIT}/cdvae/common/constants.py"
PAGE = f"https://github.com/txie-93/cdvae/blob/{COMMIT}/cdvae/common/constants.py"


def main():
    source = urllib.request.urlopen(RAW, timeout=60).read().decode()
    values = {}
    for node in ast.parse(source).body:  # plain list assignments only; nothing is executed
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    means, stds = values["CompScalerMeans"], values["CompScalerStds"]
    assert len(means) == len(stds) == 132, "expected the 132 Magpie features"
    out = {
        "description": "Means and standard deviations of the 132 Magpie features (matminer ElementProperty "
        "'magpie' preset, in its column order) that CDVAE's compute_metrics.py uses to standardise "
        "composition fingerprints before the coverage test (delta_comp is measured in these units).",
        "source_url": PAGE,
        "licence": "MIT",
        "citation": "Xie, Fu, Ganea, Barzilay, Jaakkola, ICLR 2022, arXiv:2110.06197 "
        "(cdvae/common/constants.py: CompScalerMeans, CompScalerStds)",
        "means": means,
        "stds": stds,
    }
    path = Path(__file__).with_name("cdvae_comp_scaler.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
