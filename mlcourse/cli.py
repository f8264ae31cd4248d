"""The ``mlcourse`` command: data, run, results, student."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _data(args) -> int:
    from . import data

    if args.action == "list":
        for name, e in data.registry().items():
            where = next(((label) for folder, label in data.search_dirs() if (folder / name).is_file()), "missing")
            print(f"{name}\t{where}\t{e.licence}")
        return 0
    if args.action == "verify":
        bad = missing = ok = 0
        for name in data.registry():
            try:
                found = data.find_local(name)
            except data.DatasetCorruptError as exc:
                print(f"CORRUPT  {exc}")
                bad += 1
                continue
            if found is None:
                missing += 1
                if args.verbose:
                    print(f"missing  {name}")
            else:
                ok += 1
        print(f"{ok} verified, {missing} not present locally, {bad} corrupt")
        return 1 if bad else 0
    if not args.names:
        print("mlcourse data fetch: name at least one dataset (see `mlcourse data list`)", file=sys.stderr)
        return 2
    for name in args.names:
        print(data.fetch(name, download=True))
    return 0


def _run(args) -> int:
    from . import runner

    mode = "full" if args.full else "fast"
    paths = [Path(p) for p in args.notebooks] or runner.notebooks()
    failed = 0
    for path in paths:
        print(f"[{mode}] {path.name} ...", flush=True)
        run = runner.run_notebook(path, mode)
        status = "ok" if run["ok"] else "FAILED"
        print(f"[{mode}] {path.name}: {status} in {run['wall_s']} s, peak {run['peak_mb']} MB", flush=True)
        if not run["ok"]:
            print(run["error"][-3000:], file=sys.stderr)
            failed += 1
        elif mode == "fast" and (over := runner.over_budget(run)):
            print(f"[{mode}] {path.name}: over the fast-mode budget: {over}")
    return 1 if failed else 0


def _results(args) -> int:
    from . import results

    df = results.table(args.mode)
    print(results.format_table(df, markdown=args.markdown))
    return 0


def _student(args) -> int:
    from . import runner, student

    paths = [Path(p) for p in args.notebooks] or runner.notebooks()
    try:  # refuse before writing anything
        for path in paths:
            student.check_destination(path, Path(args.out))
    except student.StudentCopyError as exc:
        print(f"mlcourse student: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(student.write_student_copy(path, Path(args.out)))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mlcourse", description="Machine learning for materials science course kit")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data", help="list, verify or fetch the course datasets")
    d.add_argument("action", choices=["list", "verify", "fetch"])
    d.add_argument("names", nargs="*", help="dataset names, for fetch")
    d.add_argument("-v", "--verbose", action="store_true", help="verify: also list missing files")
    d.set_defaults(func=_data)
    r = sub.add_parser("run", help="execute notebooks with papermill into build/")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--fast", action="store_true", help="fast mode (default): minutes on a laptop")
    g.add_argument("--full", action="store_true", help="full mode: reproduces the published numbers")
    r.add_argument("notebooks", nargs="*", help="notebook paths (default: all, in order)")
    r.set_defaults(func=_run)
    s = sub.add_parser("results", help="print recorded metrics beside published values")
    s.add_argument("--mode", choices=["fast", "full"], default=None)
    s.add_argument("--markdown", action="store_true", help="as a Markdown table (for docs/RESULTS.md)")
    s.set_defaults(func=_results)
    t = sub.add_parser("student", help="write student copies (solutions replaced by `answer = None` stubs)")
    t.add_argument("notebooks", nargs="*")
    t.add_argument("--out", default="student")
    t.set_defaults(func=_student)
    args = p.parse_args(argv)
    from .data import DatasetCorruptError, DatasetNotFoundError

    try:
        return args.func(args)
    except (DatasetNotFoundError, DatasetCorruptError, KeyError) as exc:
        print(f"mlcourse: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
