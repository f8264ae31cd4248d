"""Write data/registry.tsv: every dataset file the course reads, with sha256, URL, licence, citation.

Sources:
- ../shared/data/MANIFEST.tsv: byte-exact copies of upstream files. Their canonical URL is the
  upstream raw file at the recorded commit. The CSV exports of the migration-barrier workbook are
  not byte copies of any upstream file, so they are left out; read the workbook itself instead.
- matminer's dataset_metadata.json (shipped in its wheel): the full matbench structure datasets,
  registered as ``matminer/<name>.json.gz`` with matminer's URL and sha256 (online users only).

Run from the repository root: ``python data/make_registry.py``.
"""

import csv
import json
from pathlib import Path

import matminer.datasets

ROOT = Path(__file__).resolve().parent
MANIFEST = ROOT.parent.parent / "shared" / "data" / "MANIFEST.tsv"
CITATIONS = {
    "anthony-wang/CrabNet": "Dunn et al., npj Comput. Mater. 6, 138 (2020) [matbench]; "
    "CSV copies from Wang et al., npj Comput. Mater. 7, 77 (2021) [CrabNet]",
    "sai-mat-group/predicting-migration-barriers": "Devi, Balasubramanian, Butler, Sai Gautam, "
    "arXiv:2508.06459 (2025) [dataset]; Devi, Butler, Sai Gautam, arXiv:2508.06436 (2025) [split, models]",
    "sai-mat-group/transfer-learning-material-properties": "Devi, Butler, Sai Gautam, "
    "npj Comput. Mater. 10, 300 (2024), doi:10.1038/s41524-024-01486-1",
    "txie-93/cdvae": "Xie, Fu, Ganea, Barzilay, Jaakkola, ICLR 2022, arXiv:2110.06197; "
    "Castelli et al., Energy Environ. Sci. 5, 9034 (2012)",
    "materialsvirtuallab/mlearn": "Zuo et al., J. Phys. Chem. A 124, 731 (2020), doi:10.1021/acs.jpca.9b08723",
}


def rows():
    with open(MANIFEST, newline="") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            if "#" in r["source_path"]:  # a sheet export, not a byte copy of an upstream file
                continue
            url = (
                f"https://raw.githubusercontent.com/{r['source_repo']}/"
                f"{r['source_commit']}/{r['source_path']}"
            )
            yield r["path"], r["sha256"], url, r["license"], CITATIONS[r["source_repo"]]
    meta_file = Path(matminer.datasets.__file__).parent / "dataset_metadata.json"
    for name, m in sorted(json.loads(meta_file.read_text()).items()):
        if name.startswith("matbench_"):
            cite = "Dunn et al., npj Comput. Mater. 6, 138 (2020); " + m["reference"].split("\n")[0][:200]
            yield f"matminer/{name}.json.gz", m["hash"], m["url"], "see matminer dataset docs", cite


with open(ROOT / "registry.tsv", "w", newline="") as fh:
    w = csv.writer(fh, delimiter="\t", lineterminator="\n")
    w.writerow(["name", "sha256", "url", "licence", "citation"])
    w.writerows(rows())
