"""Run every Python block of docs/workshop.md's "Your own data" section, each in a fresh interpreter.

    python scripts/make_workshop_data.py --out workshop_data   # once
    python scripts/check_workshop_snippets.py [LESSON ...]     # e.g. 03 05; default: all

Run from the repository root. Prints each block's lesson, wall time and status; exits 1 if one fails.
"""

import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def blocks() -> list[tuple[str, str]]:
    """(lesson number, code) of each ```python block after the "## Your own data" heading."""
    text = (ROOT / "docs" / "workshop.md").read_text()
    section = text.split("## Your own data", 1)[1].split("\n## ", 1)[0]
    out = []
    for part in re.split(r"\n### Lesson ", section)[1:]:
        lesson = part[:2]
        out += [(lesson, code) for code in re.findall(r"```python\n(.*?)```", part, flags=re.S)]
    return out


def main(argv: list[str]) -> int:
    if not (ROOT / "workshop_data").is_dir():
        print("no workshop_data/: run `python scripts/make_workshop_data.py --out workshop_data` first", file=sys.stderr)
        return 2
    failed = 0
    for lesson, code in blocks():
        if argv and lesson not in argv:
            continue
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
        status = "ok" if run.returncode == 0 else "FAILED"
        failed += run.returncode != 0
        print(f"lesson {lesson}: {status} in {time.perf_counter() - start:.0f} s")
        print(run.stdout[-2000:])
        if run.returncode:
            print(run.stderr[-3000:], file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
