"""Check every notebook's fast-mode run against the budget (mlcourse.runner.BUDGET).

The budget measures the lesson, not the machine: CPU time of the kernel and its children (2 cores x
180 s = 360 CPU-s) and peak memory (1024 MB); wall time is shown beside them but not gated, since it
depends on what else the machine runs. Reads build/runs.fast.json, written by the runner (``mlcourse
run --fast`` or the notebook tests); run one of those first. Checks the notebooks named on the
command line (default: all). Exits 1 if a notebook is missing, failed or is over budget.
"""

import sys

from mlcourse import runner
from mlcourse.results import build_dir, read_json

runs = read_json(build_dir() / "runs.fast.json")
problems = 0
print(f"{'notebook':40s} {'CPU (s)':>8s} {'peak (MB)':>10s} {'wall (s)':>9s}  status   (budget {runner.BUDGET})")


def _num(value) -> str:
    return "" if value is None else f"{value:.1f}"


for path in [p for p in runner.notebooks() if len(sys.argv) < 2 or p.name in sys.argv[1:]]:
    run = runs.get(path.name)
    if run is None:
        status, problems = "NOT RUN", problems + 1
        print(f"{path.name:40s} {'':>8s} {'':>10s} {'':>9s}  {status}")
        continue
    over = runner.over_budget(run)
    failed = "NOT FINISHED" if (run.get("error") or "").startswith("not finished") else "FAILED"
    status = "ok" if run["ok"] and not over else (failed if not run["ok"] else "OVER: " + "; ".join(over))
    problems += status != "ok"
    print(f"{path.name:40s} {_num(run.get('cpu_s')):>8s} {_num(run.get('peak_mb')):>10s} {_num(run.get('wall_s')):>9s}  {status}")
sys.exit(1 if problems else 0)
