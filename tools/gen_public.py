"""Generate ``trio_uring/_core/_public_generated.py`` from the hot modules' source.

    python tools/gen_public.py          # (re)write it
    python tools/gen_public.py --check  # exit 1 if it is not current

The public objects are what ``trio_uring.__all__`` and ``trio_uring.lowlevel.__all__``
reach in a hot module (``trio_uring/_pure.py``'s ``HOT``), and the public methods
and properties those classes define (``UringIOManager``'s methods excepted: see
:data:`METHODS_LEFT`).  For each function, method or property the generated module
has a maker that, given the compiled object, returns a plain-Python one with the
source's signature and docstring calling it; for each class its docstring and a
stub carrying its constructor's signature.  ``trio_uring/_core/_public.py`` applies
them (only in a compiled build).  Like trio's ``gen_exports``: the output is
committed, and ``tests/test_coroutine_api.py`` checks it is current.
"""

from __future__ import annotations

import ast
import inspect
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "trio_uring" / "_core" / "_public_generated.py"
#: Classes whose methods keep their compiled objects: ``UringIOManager`` is trio's I/O
#: manager (trio calls its methods from its own coroutine functions, compiled code
#: through the vtable, the file operations ``perform`` from Python on every call).
METHODS_LEFT = frozenset({"trio_uring._core._manager.UringIOManager"})
#: The name the generated functions call the compiled object by.
BODY = "_body_"


def surface() -> list[tuple[str, str, str]]:
    """``(module, qualname, kind)`` of every public object of a hot module, ``kind``
    one of ``"class"``, ``"async"``, ``"function"``, ``"property"``; read from the
    pure build (the source's own objects)."""
    if "trio_uring" not in sys.modules:
        os.environ["TRIO_URING_PURE"] = "1"
    import trio_uring
    import trio_uring.lowlevel
    from trio_uring._core._public import defined_in
    from trio_uring._pure import HOT

    found: dict[tuple[str, str], str] = {}
    for package in (trio_uring, trio_uring.lowlevel):
        for name in package.__all__:
            obj = getattr(package, name)
            module = defined_in(obj)  # (``__module__`` says ``trio_uring``)
            if module not in HOT or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if inspect.isfunction(obj):
                kind = "async" if inspect.iscoroutinefunction(obj) else "function"
                found[module, obj.__qualname__] = kind
                continue
            found[module, obj.__qualname__] = "class"
            if f"{module}.{obj.__qualname__}" in METHODS_LEFT:
                continue
            for attr, value in vars(obj).items():
                if attr.startswith("_"):
                    continue
                qualname = f"{obj.__qualname__}.{attr}"
                if isinstance(value, property):
                    found[module, qualname] = "property"
                elif inspect.isfunction(value):
                    kind = "async" if inspect.iscoroutinefunction(value) else "function"
                    found[module, qualname] = kind
    return [(m, q, k) for (m, q), k in sorted(found.items())]


def _find(tree: ast.Module, qualname: str) -> ast.AST:
    """The definition of ``qualname`` (the implementation, after any ``@overload``)."""
    scope: list[ast.stmt] = tree.body
    node: ast.AST | None = None
    for part in qualname.split("."):
        node = None
        for stmt in scope:
            if (
                isinstance(stmt, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                and stmt.name == part
            ):
                node = stmt  # (the last one: an @overload's implementation follows it)
        if node is None:
            raise LookupError(qualname)
        scope = getattr(node, "body", [])
    assert node is not None
    return node


def _doc(source: str, node: Any) -> str | None:
    """The docstring's literal exactly as written (so the string is the same)."""
    first = node.body[0] if node.body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return ast.get_source_segment(source, first.value)
    return None


def _parameters(args: ast.arguments, *, drop_first: bool = False) -> tuple[str, str]:
    """The parameter list as written, and the call passing each parameter on."""
    args = ast.arguments(**{f: getattr(args, f) for f in args._fields})
    positional = [*args.posonlyargs, *args.args]
    if drop_first:
        if args.posonlyargs:
            args.posonlyargs = args.posonlyargs[1:]
        else:
            args.args = args.args[1:]
        positional = positional[1:]
    for default in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
        ast.literal_eval(default)  # (a generated default must mean the same there)
    call = [a.arg for a in positional]
    if args.vararg:
        call.append("*" + args.vararg.arg)
    call += [f"{a.arg}={a.arg}" for a in args.kwonlyargs]
    if args.kwarg:
        call.append("**" + args.kwarg.arg)
    for name in call:
        if BODY in name:
            raise ValueError(f"a parameter is called {BODY}")
    return ast.unparse(args), ", ".join(call)


def _returns(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    return "" if node.returns is None else f" -> {ast.unparse(node.returns)}"


def _member(source: str, node: Any, kind: str, maker: str) -> list[str]:
    params, call = _parameters(node.args)
    doc = _doc(source, node)
    head = "async def" if kind == "async" else "def"
    if kind == "async":
        invoke = f"await {BODY}({call})"
    elif kind == "property":
        invoke = f"{BODY}.__get__(self)"
    else:
        invoke = f"{BODY}({call})"
    lines = [f"def {maker}({BODY}: Any) -> Any:"]
    lines.append(f"    {head} {node.name}({params}){_returns(node)}:")
    if doc is not None:
        lines.append(f"        {doc}")
    lines.append(f"        return {invoke}")
    lines.append("")
    lines.append(f"    return {'property(' + node.name + ')' if kind == 'property' else node.name}")
    return lines


def _class(source: str, node: ast.ClassDef, maker: str) -> tuple[list[str], str]:
    """Lines defining the signature stub (if any) and the ``CLASSES`` value."""
    doc = _doc(source, node) or "None"
    init = next(
        (s for s in node.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None
    )
    attrs_made = any("attrs" in ast.unparse(d) for d in node.decorator_list)
    if init is not None:
        params, _ = _parameters(init.args, drop_first=True)
        stub = [f"def {maker}({params}){_returns(init)}: ..."]
    elif attrs_made:
        fields = [
            ast.unparse(s)
            for s in node.body
            if isinstance(s, ast.AnnAssign) and "ClassVar" not in ast.unparse(s.annotation)
        ]
        stub = [f"def {maker}({', '.join(fields)}): ..."]
    else:
        return [], f"({doc}, None, False)"
    return stub, f"({doc}, {maker}, {attrs_made})"


def generate() -> str:
    """The text of ``_public_generated.py``."""
    out = [
        "# Generated by tools/gen_public.py from the hot modules' source: do not edit.",
        "# (tests/test_coroutine_api.py checks it is current; trio_uring/_core/_public.py",
        "# says what it is for.)",
        "# mypy: ignore-errors",
        "# ruff: noqa",
        "from __future__ import annotations",
        "",
        "from typing import Any",
        "",
    ]
    members: dict[str, list[tuple[str, str]]] = {}
    classes: dict[str, list[tuple[str, str]]] = {}
    trees: dict[str, tuple[str, ast.Module]] = {}
    for n, (module, qualname, kind) in enumerate(surface()):
        if module not in trees:
            path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
            text = path.read_text()
            trees[module] = (text, ast.parse(text))
        source, tree = trees[module]
        node = _find(tree, qualname)
        maker = f"_{n}_{qualname.replace('.', '_')}"
        out.append("")
        if kind == "class":
            assert isinstance(node, ast.ClassDef)
            stub, value = _class(source, node, maker)
            out += stub
            classes.setdefault(module, []).append((qualname, value))
        else:
            out += _member(source, node, kind, maker)
            members.setdefault(module, []).append((qualname, maker))
        out.append("")
    for title, table in (("CLASSES", classes), ("MEMBERS", members)):
        out.append("")
        out.append(f"{title}: dict[str, dict[str, Any]] = {{")
        for module, entries in table.items():
            out.append(f"    {module!r}: {{")
            out += [f"        {q!r}: {v}," for q, v in entries]
            out.append("    },")
        out.append("}")
    return "\n".join(out) + "\n"


def main() -> int:
    text = generate()
    if "--check" in sys.argv[1:]:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is not current: run python tools/gen_public.py")
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
