"""The ``mlcourse`` command: data, run, results, student."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path


def _data_names(args) -> list[str]:
    """The registry names that ``args`` select: the files of the lessons named, file names, or every lesson's."""
    from . import data

    if args.all or (args.action == "verify" and not args.names):
        return sorted({n for lesson in data.lessons() for n in data.lesson_files(lesson)})
    names = []
    for item in args.names:
        names += [item] if item in data.registry() else data.lesson_files(item)
    return names


def _data(args) -> int:
    from tqdm.auto import tqdm

    from . import data

    if args.action == "list":
        for name, e in data.registry().items():
            where = next(((label) for folder, label in data.search_dirs() if (folder / name).is_file()), "missing")
            print(f"{name}\t{where}\t{e.licence}")
        return 0
    names = _data_names(args)
    if not names:
        print("mlcourse data fetch: name a lesson (00 ... 08), a dataset (see `mlcourse data list`) or --all",
              file=sys.stderr)
        return 2
    if args.action == "verify":
        missing, bad = [], []
        for name in names:
            try:
                if data.find_local(name) is None:
                    missing.append(name)
            except data.DatasetCorruptError as exc:
                print(f"CORRUPT  {exc}")
                bad.append(name)
        for name in missing:
            print(f"missing  {name}")
        print(f"{len(names) - len(missing) - len(bad)} of {len(names)} files verified, {len(missing)} missing, "
              f"{len(bad)} corrupt. Searched: " + "; ".join(f"{f} ({label})" for f, label in data.search_dirs()))
        registry = data.registry()
        generated = [n for n in missing + bad if not registry[n].url]  # files this project makes: fetch cannot
        if len(generated) < len(missing) + len(bad):
            print("Fix: `mlcourse data fetch` on a machine with internet (or set $MLCOURSE_DATA_DIR to a folder "
                  "that holds the files); lessons: " + ", ".join(data.lessons()), file=sys.stderr)
        for name in generated:
            print(f"Fix for {name}: {data.how_to_get(registry[name])}", file=sys.stderr)
        return 1 if missing or bad else 0
    failed = 0
    for name in tqdm(names, desc="course data", unit="file", disable=len(names) < 2):
        try:
            data.fetch(name, progress=len(names) == 1)  # honours $MLCOURSE_OFFLINE
        except (data.DatasetNotFoundError, data.DatasetCorruptError) as exc:
            print(f"mlcourse: {exc}", file=sys.stderr)
            failed += 1
    print(f"{len(names) - failed} of {len(names)} files present and verified")
    return 1 if failed else 0


def _seconds(text: str) -> int:
    """argparse type: a whole number of seconds ≥ 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of seconds ≥ 1, not {text!r}")
    return int(text)


def _raise_interrupt(signum, frame):
    """SIGTERM handler of `mlcourse run`: stop as Ctrl-C does, so the run is recorded as interrupted."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _run(args) -> int:
    from . import runner

    mode = "full" if args.full else "fast"
    paths = [Path(p) for p in args.notebooks] or runner.notebooks()
    try:
        timeout = args.cell_timeout if args.cell_timeout is not None else runner.cell_timeout_s()
    except ValueError as exc:
        print(f"mlcourse run: {exc}", file=sys.stderr)
        return 2
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    failed, path = 0, None
    try:
        for path in paths:
            print(f"[{mode}] {path.name} ...", flush=True)
            run = runner.run_notebook(path, mode, cell_timeout=timeout)
            status = "ok" if run["ok"] else "FAILED"
            print(f"[{mode}] {path.name}: {status}: CPU {run['cpu_s']} s, peak {run['peak_mb']} MB, "
                  f"wall {run['wall_s']} s", flush=True)
            if not run["ok"]:
                print(run["error"][-3000:], file=sys.stderr)
                failed += 1
            elif mode == "fast" and (over := runner.over_budget(run)):
                print(f"[{mode}] {path.name}: over the fast-mode budget {runner.BUDGET}: {'; '.join(over)}")
    except KeyboardInterrupt as exc:
        how = exc.args[0] if exc.args else "Ctrl-C"
        where = f"{path.name}, recorded as not ok in runs.{mode}.json; its earlier results are kept" if path else "start"
        print(f"mlcourse run: interrupted ({how}) at {where}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 1 if failed else 0


def _lessons(names: list[str]) -> list[str] | None:
    """Lesson stems for names given as 00, 00_data_and_representations or a notebook path (None: all)."""
    from . import runner

    if not names:
        return None
    stems, out = [p.stem for p in runner.notebooks()], []
    for name in names:
        key = Path(name).stem
        match = [s for s in stems if s == key or s.startswith(key + "_")]
        if len(match) != 1:
            raise KeyError(f"no lesson {name!r}; lessons: {', '.join(stems)}")
        out.append(match[0])
    return out


def _results(args) -> int:
    from . import results

    lessons = _lessons(args.lessons)
    if args.compare:
        a, b = args.compare
        diffs = results.compare(Path(a), Path(b), lessons, rtol=args.rtol, atol=args.atol)
        for line in diffs:
            print(f"differs: {line}")
        n = sum(len(e) for k, e in results.recorded(Path(a)).items() if lessons is None or k[0] in lessons)
        print(f"{n} metrics of {a} compared with {b} (rtol {args.rtol:g}, atol {args.atol:g}): "
              + (f"{len(diffs)} differ" if diffs else "all equal"))
        return 1 if diffs else 0
    if args.check:
        mode = args.mode or "fast"
        df = results.check(mode, lessons)
        bad = df[df.status != "ok"]
        if len(bad):
            print(f"{len(bad)} of {len(df)} expected {mode}-mode metrics drifted or are missing "
                  "(expected values: notebooks/<lesson>.toml):")
            print(results.format_check(bad))
        else:
            print(f"all {len(df)} expected {mode}-mode metrics of {df.lesson.nunique()} lessons within tolerance")
        return 1 if len(bad) else 0
    df = results.table(args.mode)
    if lessons is not None:
        df = df[df.lesson.isin(lessons)]
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


def _site(args) -> int:
    from . import site

    try:
        out = site.build(Path(args.executed) if args.executed else None, Path(args.out) if args.out else None)
    except site.SiteError as exc:
        print(f"mlcourse site: {exc}", file=sys.stderr)
        return 1
    print(f"course website: {out / 'index.html'} (any static host serves this folder as it is)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mlcourse", description="Machine learning for materials science course kit")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data", help="list, verify or fetch the course datasets",
                       description="verify and fetch take lessons (00, 03_interatomic_potentials, ...), file names "
                                   "or --all (every lesson's files; verify's default). verify exits 1 if a file is "
                                   "missing or corrupt; fetch downloads only when $MLCOURSE_OFFLINE is not set.")
    d.add_argument("action", choices=["list", "verify", "fetch"])
    d.add_argument("names", nargs="*", help="lessons or dataset names (default: every lesson's files)")
    d.add_argument("--all", action="store_true", help="every lesson's files (the default of verify)")
    d.set_defaults(func=_data)
    r = sub.add_parser("run", help="execute notebooks with papermill into build/")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--fast", action="store_true", help="fast mode (default): minutes on a laptop")
    g.add_argument("--full", action="store_true", help="full mode: reproduces the published numbers")
    r.add_argument("--cell-timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="fail a cell that runs longer (default: $MLCOURSE_CELL_TIMEOUT_S or 600)")
    r.add_argument("notebooks", nargs="*", help="notebook paths (default: all, in order)")
    r.set_defaults(func=_run)
    s = sub.add_parser("results", help="print recorded metrics beside published values, or check them",
                       description="--check compares the recorded metrics with the expected values of "
                                   "notebooks/<lesson>.toml and exits 1 listing those that drifted or are "
                                   "missing. --compare A B compares two build folders' metrics (a rerun) "
                                   "and exits 1 naming those that differ.")
    s.add_argument("lessons", nargs="*", help="lessons (00, 01_classic_regression, ...; default: all)")
    s.add_argument("--mode", choices=["fast", "full"], default=None, help="one mode (--check: default fast)")
    s.add_argument("--markdown", action="store_true", help="as a Markdown table (for docs/RESULTS.md)")
    s.add_argument("--check", action="store_true", help="compare with the expected values; exit 1 on drift")
    s.add_argument("--compare", nargs=2, metavar=("BUILD_A", "BUILD_B"),
                   help="compare the metrics recorded in two build folders; exit 1 on a difference")
    s.add_argument("--rtol", type=float, default=1e-9, help="relative tolerance of --compare (default 1e-9)")
    s.add_argument("--atol", type=float, default=0.0, help="absolute tolerance of --compare (default 0)")
    s.set_defaults(func=_results)
    t = sub.add_parser("student", help="write student copies (solutions replaced by `answer = None` stubs)")
    t.add_argument("notebooks", nargs="*")
    t.add_argument("--out", default="student")
    t.set_defaults(func=_student)
    w = sub.add_parser("site", help="build the course website from the executed lessons (make course first)",
                       description="Renders the lessons `mlcourse run` executed (build/fast/) with Sphinx and "
                                   "myst-nb into a static website (build/site/); executes nothing.")
    w.add_argument("--executed", default=None, help="folder of executed lessons (default: build/fast)")
    w.add_argument("--out", default=None, help="output folder (default: build/site)")
    w.set_defaults(func=_site)
    args = p.parse_args(argv)
    from .data import DatasetCorruptError, DatasetNotFoundError
    from .results import ExpectationError

    try:
        return args.func(args)
    except (DatasetNotFoundError, DatasetCorruptError, ExpectationError, KeyError) as exc:
        print(f"mlcourse: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
