#!/usr/bin/env bash
# Mutation testing of the canary judge (make mutation; minutes, so not in CI): every
# mutant mutmut makes of the judge's code must fail its unit tests. The score and the
# survivors, each with why it is equivalent, are in docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$PWD/.venv/bin/python
"$python" -c 'import mutmut' 2>/dev/null || .venv/bin/pip install --quiet 'mutmut==2.5.1'
export PYTHONPATH=$PWD/.cache/collections  # the collection, linked to this checkout
judge=plugins/module_utils/canary_stats.py,plugins/module_utils/canary.py
tests=tests/unit/plugins/module_utils/test_canary.py
rm -f .mutmut-cache
echo "mutation: mutating $judge, each mutant against $tests (several minutes)"
# mutmut 2 counts only exit code 1 as a failing run: a mutant that cannot even be imported
# (pytest's exit 2, a collection error) would count as a survivor, so any failure is 1
.venv/bin/mutmut run --paths-to-mutate "$judge" --tests-dir tests/unit \
  --runner "sh -c '$python -m pytest -x -q -p no:cacheprovider $tests || exit 1'" >/dev/null || true
.venv/bin/mutmut results
"$python" - <<'PY'
import sqlite3
status = dict(sqlite3.connect(".mutmut-cache").execute(
    "select status, count(*) from Mutant group by status").fetchall())
killed, total = status.get("ok_killed", 0), sum(status.values())
print(f"mutation score: {killed}/{total} killed ({100 * killed / max(total, 1):.1f}%): {status}")
PY
