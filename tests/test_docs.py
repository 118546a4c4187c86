"""The docs (``docs/``, ``make docs``): they build with no warning, nothing suppressed, and
the API reference has an entry with text for every public name.

"Public" is what a user can reach: every name in ``trio_uring.__all__`` and
``trio_uring.lowlevel.__all__``, and every attribute of such a class (and of the
trio_uring classes it inherits from) whose name has no leading underscore: methods,
properties, class attributes and annotated instance attributes.  A new public name
without an entry, or an entry whose docstring is missing (as autodoc shows a compiled
function's), fails here.
"""

from __future__ import annotations

import ast
import json
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from docutils import nodes
from sphinx import addnodes

from tests._child import TESTS_ROOT, child_env

pytestmark = pytest.mark.no_uring_ok

DOCS = Path(TESTS_ROOT) / "docs"


def public_names() -> list[str]:
    """Every public name, qualified as the docs' entries are (``trio_uring.X.y``)."""
    import trio_uring
    import trio_uring.lowlevel

    names = []
    for module in (trio_uring, trio_uring.lowlevel):
        for name in module.__all__:
            qualified = f"{module.__name__}.{name}"
            names.append(qualified)
            obj = getattr(module, name)
            if isinstance(obj, type):
                names += [f"{qualified}.{member}" for member in _public_members(obj)]
    return names


def _public_members(cls: type) -> list[str]:
    found: dict[str, None] = {}
    for klass in cls.__mro__:
        if not klass.__module__.startswith("trio_uring"):
            continue  # (trio's and the stdlib's are theirs to document)
        attributes = vars(klass)
        for name in [*attributes, *attributes.get("__annotations__", {})]:
            if not name.startswith("_"):
                found[name] = None
    return list(found)


class Built:
    def __init__(self, out: Path, result: subprocess.CompletedProcess[str]) -> None:
        self.out = out
        self.result = result

    def entries(self) -> Iterator[tuple[str, addnodes.desc]]:
        """Each Python object entry of every page, with the name it is filed under."""
        for path in sorted((self.out / "doctrees").glob("**/*.doctree")):
            with path.open("rb") as f:
                doctree = pickle.load(f)
            for desc in doctree.findall(addnodes.desc):
                if desc["domain"] != "py":
                    continue
                signatures = [c for c in desc.children if isinstance(c, addnodes.desc_signature)]
                for signature in signatures:  # (its own: not its members')
                    for ident in signature["ids"]:
                        yield ident, desc


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The docs built as ``make docs`` builds them, with nitpicky references on and
    conf.py's ``suppress_warnings`` overridden to nothing."""
    out = tmp_path_factory.mktemp("docs")
    # (A child: Sphinx imports trio_uring from its source, TRIO_URING_PURE=1, while this
    # process may run the compiled build.)
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q"]
    command += ["-D", "suppress_warnings=", "-b", "html", "-d", str(out / "doctrees")]
    command += [str(DOCS), str(out / "html")]
    result = subprocess.run(command, env=child_env(), capture_output=True, text=True)
    return Built(out, result)


def test_docs_build_with_no_warning(built: Built) -> None:
    assert built.result.returncode == 0, built.result.stderr
    assert built.result.stderr == ""


def test_conf_hides_no_warning() -> None:
    # (The build above overrides suppress_warnings; the ignore lists it cannot.)
    tree = ast.parse((DOCS / "conf.py").read_text())
    assigned = {
        target.id: node.value
        for node in ast.walk(tree)
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    for name in ("suppress_warnings", "nitpick_ignore", "nitpick_ignore_regex"):
        assert name not in assigned, f"docs/conf.py sets {name}"
    nitpicky = assigned["nitpicky"]
    assert isinstance(nitpicky, ast.Constant) and nitpicky.value is True


def test_every_public_name_has_an_entry(built: Built) -> None:
    # The names as the source defines them (the docs are built from it), and as the
    # build this process runs shows them (a compiled class also lists the instance
    # attributes its __init__ sets, such as SocketStream.socket).
    code = "import json, tests.test_docs as t; print(json.dumps(t.public_names()))"
    env = child_env(TRIO_URING_PURE="1")
    names = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout
    )
    names += [name for name in public_names() if name not in names]
    assert "trio_uring.SocketStream.send_all" in names  # (the check sees members)
    documented = {ident for ident, _ in built.entries()}
    missing = [name for name in names if name not in documented]
    assert not missing, f"public names with no entry in the docs: {missing}"


#: What autodoc shows for a constant it finds no comment for: its type's docstring.
BUILTIN_DOCS = [t.__doc__.splitlines()[0] for t in (int, str, bytes, float, tuple, dict, list)]


def test_no_entry_without_text(built: Built) -> None:
    empty = set()
    count = 0
    for ident, desc in built.entries():
        count += 1
        content = next(c for c in desc.children if isinstance(c, addnodes.desc_content))
        # Text of its own: not only the parameter/return-type fields autodoc makes from
        # the annotations, nor only the entries of its members.
        own = [
            child
            for child in content.children
            if not isinstance(child, (nodes.field_list, addnodes.desc, addnodes.index))
            and child.astext().strip()
        ]
        if not own or any(doc in child.astext() for doc in BUILTIN_DOCS for child in own):
            empty.add(ident)
    assert count > 100
    assert not empty, f"entries with no text: {sorted(empty)}"
