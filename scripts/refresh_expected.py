"""After an intended change to a lesson: copy its fast-mode recorded metrics into ``[expected.fast]``
of ``notebooks/<lesson>.toml``, keeping each metric's tolerance. Metrics recorded but not expected (new ones, or timings, which
are never checked) and expected but no longer recorded are listed, not added or deleted. Review the diff before committing:
``mlcourse results --check`` exists to catch changes nobody intended.

Usage: python scripts/refresh_expected.py LESSON [LESSON ...]   (after a fast run of each)
"""

import json
import re
import sys

from mlcourse.results import build_dir
from mlcourse.runner import NOTEBOOK_DIR

for lesson in sys.argv[1:]:
    toml = NOTEBOOK_DIR / f"{lesson}.toml"
    recorded = {k: v["value"] for k, v in json.loads((build_dir() / "results" / f"{lesson}.fast.json").read_text()).items()}
    head, sep, rest = toml.read_text().partition("[expected.fast]\n")
    fast, nxt, tail = rest.partition("\n[")
    lines, seen = [], set()
    for line in fast.splitlines():
        m = re.match(r'^"(?P<name>[^"]+)" = \{ value = (?P<value>[^,}]+)(?P<rest>.*)$', line)
        if m and m["name"] in recorded:
            seen.add(m["name"])
            line = f'"{m["name"]}" = {{ value = {recorded[m["name"]]:.7g}{m["rest"]}'
        elif m:
            print(f"{lesson}: {m['name']} is no longer recorded (kept; delete it if that is intended)")
        lines.append(line)
    for name in [n for n in recorded if n not in seen]:
        print(f"{lesson}: {name} = {recorded[name]:.7g} is recorded but not expected (add it by hand unless a timing)")
    toml.write_text(head + sep + "\n".join(lines) + "\n" + (nxt + tail if nxt else ""))
    print(f"updated {toml}")
