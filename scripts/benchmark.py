"""Check every notebook's fast-mode run against the budget: ≤ 3 min wall, ≤ 1.5 GB peak memory.

Reads build/runs.fast.json, written by the runner (``mlcourse run --fast`` or the notebook tests);
run one of those first. Checks the notebooks named on the command line (default: all). Exits 1 if a
notebook is missing, failed or is over budget.
"""

import json
import sys

from mlcourse import runner
from mlcourse.results import build_dir

runs_file = build_dir() / "runs.fast.json"
runs = json.loads(runs_file.read_text()) if runs_file.exists() else {}
problems = 0
print(f"{'notebook':40s} {'wall (s)':>9s} {'peak (MB)':>10s}  status   (budget {runner.BUDGET})")
for path in [p for p in runner.notebooks() if len(sys.argv) < 2 or p.name in sys.argv[1:]]:
    run = runs.get(path.name)
    if run is None:
        status, problems = "NOT RUN", problems + 1
        print(f"{path.name:40s} {'':>9s} {'':>10s}  {status}")
        continue
    over = runner.over_budget(run)
    status = "ok" if run["ok"] and not over else ("FAILED" if not run["ok"] else "OVER: " + "; ".join(over))
    problems += status != "ok"
    print(f"{path.name:40s} {run['wall_s']:9.1f} {run['peak_mb']:10.1f}  {status}")
sys.exit(1 if problems else 0)
