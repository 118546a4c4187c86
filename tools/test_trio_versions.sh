#!/usr/bin/env bash
# make test-trio-versions: the project's tests and trio's own suite (under --trio-uring)
# with each tested trio release (TRIO_VERSIONS), one virtualenv per release.
#
# The extension modules are not rebuilt per release: each virtualenv gets the main
# virtualenv's editable-install record (its .pth file, import finder and dist-info,
# which point at this checkout), so it imports the very modules `make` compiled
# beside the .py files (same interpreter: the main virtualenv's base Python).  That is
# the combination a user of a compiled wheel has: built once, installed beside
# whichever trio they have.  Only trio and the test extras differ (pinned per release
# where the newest test extras need a newer trio).
#
# PY (default .venv/bin/python) is the main virtualenv's Python; the virtualenvs go
# to build/trio-versions/<release>/ and are reused while their requirements match.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
VERSIONS=${TRIO_VERSIONS:-0.30.0 0.31.0 0.32.0 0.33.0 0.34.0 0.35.0}
MAKE=${MAKE:-make}

# Test requirements that need pinning for an older trio (what was current at its release):
#   anyio 4.11 calls CancelScope.cancel(reason), which trio 0.31 added;
#   trio < 0.34's own test_exports reads mypy's JSON cache (mypy 1.19 made another format
#   the default; trio 0.34 asks for JSON), and trio < 0.32's does not expect attrs 25.4's
#   __attrs_props__.
pins() {
    case "$1" in
        0.30.*) echo "anyio<4.11 mypy<1.19 attrs<25.4" ;;
        0.31.*) echo "mypy<1.19 attrs<25.4" ;;
        0.32.* | 0.33.*) echo "mypy<1.19" ;;
    esac
}

base=$("$PY" -c 'import sys; print(sys._base_executable)')
site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
build=$("$PY" -c 'from trio_uring._pure import build; print(build())')
requirements=$("$PY" - <<'PYEOF'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = [d for d in project["dependencies"] if not d.startswith("trio")]
print(" ".join(deps + project["optional-dependencies"]["test"]))
PYEOF
)
editable=$(cd "$site" && ls -d __editable__.trio_uring-*.pth __editable___trio_uring_*_finder.py \
    trio_uring-*.dist-info)

failed=()
for version in $VERSIONS; do
    venv=build/trio-versions/$version
    want="trio==$version $requirements $(pins "$version") | $editable | $base"
    if [ ! -f "$venv/.ready" ] || [ "$(cat "$venv/.ready")" != "$want" ]; then
        echo "== trio $version: a virtualenv in $venv"
        rm -rf "$venv"
        "$base" -m venv "$venv"
        # shellcheck disable=SC2046,SC2086
        "$venv/bin/python" -m pip install -q "trio==$version" $requirements $(pins "$version")
        venv_site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        for item in $editable; do
            cp -r "$site/$item" "$venv_site/"
        done
        echo "$want" > "$venv/.ready"
    fi
    "$venv/bin/python" - "$version" "$build" <<'PYEOF'
import sys
import trio
from trio_uring._pure import build
from trio_uring._core import _trio_compat
version, main_build = sys.argv[1:]
assert trio.__version__ == version, (trio.__version__, version)
assert build() == main_build, (build(), main_build)
assert all(_trio_compat.MIRRORED.values()), _trio_compat.MIRRORED
print(f"== trio {trio.__version__}: trio_uring's hot path {build()}, every mirror recorded")
PYEOF
    rm -rf tests/trio_suite/.mypy_cache  # (trio's test_exports fills it: one per release)
    start=$SECONDS
    # (-o: the main virtualenv is up to date; never rebuild it with this Python.
    # -k: trio's suite runs even if the project's tests failed.)
    if "$MAKE" --no-print-directory -k -o "${VENV:-.venv}/.installed" test-project test-trio \
        PY="$venv/bin/python"; then
        echo "== trio $version: passed in $((SECONDS - start)) s"
    else
        echo "== trio $version: FAILED (after $((SECONDS - start)) s)"
        failed+=("$version")
    fi
done
if [ ${#failed[@]} -ne 0 ]; then
    echo "== failed with trio ${failed[*]}"
    exit 1
fi
echo "== passed with trio $VERSIONS"
