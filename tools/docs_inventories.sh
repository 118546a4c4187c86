#!/usr/bin/env bash
# Remake the intersphinx inventories vendored in docs/inventories/ (make docs-inventories;
# docs/inventories/README.rst says what they are).  Needs Debian's pythonX.Y-doc package
# (apt-get install python3.11-doc) and PyPI; takes about two minutes.
#
#   python.inv  the objects.inv Debian's pythonX.Y-doc ships (X.Y: the virtualenv's Python)
#   trio.inv    trio's own docs (docs/source of the sdist of the trio installed in the
#               virtualenv) built offline with the requirements trio's sdist lists
#               (docs-requirements.in), in a throw-away virtualenv
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
out=$PWD/docs/inventories
pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pydoc=${PYDOC:-/usr/share/doc/python$pyver/html/objects.inv}
if [ ! -f "$pydoc" ]; then
    echo "$pydoc is missing: apt-get install python$pyver-doc" >&2
    exit 1
fi
cp "$pydoc" "$out/python.inv"

trio_version=$("$PY" -c 'import trio; print(trio.__version__)')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip download -q --no-deps --no-binary :all: "trio==$trio_version" -d "$work"
tar xzf "$work/trio-$trio_version.tar.gz" -C "$work"
src=$work/trio-$trio_version
"$PY" -m venv "$work/venv"
"$work/venv/bin/pip" install -q -r "$src/docs-requirements.in"
"$work/venv/bin/pip" install -q --no-deps "$src"
# Offline: Python's inventory from the file above; trio's links to other projects' docs
# (outcome, sniffio, pyOpenSSL, ...) are left out, which only drops those links.
cat >> "$src/docs/source/conf.py" <<CONF

# (trio_uring's tools/docs_inventories.sh: build offline)
intersphinx_mapping = {"python": ("https://docs.python.org/3", "$out/python.inv")}
CONF
if ! (cd "$src/docs/source" && "$work/venv/bin/python" -m sphinx -q -b html . "$work/html") \
    2> "$work/sphinx.log"; then
    cat "$work/sphinx.log" >&2
    exit 1
fi
cp "$work/html/objects.inv" "$out/trio.inv"
echo "docs/inventories: python.inv (Python $pyver), trio.inv (trio $trio_version)"
