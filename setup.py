# The C part is built by cffi in API mode at install time (see trio_uring/_core/_build_ring.py).
#
# The ring's hot calls go through a small hand-written CPython extension,
# trio_uring/_core/_ringext.c (no liburing; it calls the cffi module's C functions),
# built with the compiled hot path; if it fails to build, the install warns and the
# hot path calls the cffi module instead.
#
# The hot path (trio_uring/_pure.py's HOT modules) is compiled with mypyc by default,
# from the same .py sources, into extension modules beside them (their shared code in
# trio_uring/_hot__mypyc.*.so).  TRIO_URING_COMPILE=0 at install time builds pure;
# TRIO_URING_PURE=1 at run time imports the .py files instead.  If mypyc or the C
# compiler fails on them, the install warns and goes on pure.  Whatever happened is
# recorded in trio_uring/_build_record.json (trio_uring._pure.build_record() reads
# it): `python -m trio_uring info` and a warning at import say why a build is pure.
#
# Build time (README.md, "Install", measured 2026-12-07): about a minute of CPU for
# the compiled build (mypyc type-checks and translates the hot modules, then the C
# compiler builds them), 6 s with TRIO_URING_COMPILE=0.  The build requirements (mypy only
# when compiling) come from the in-tree backend, buildsys/trio_uring_backend.py.
import json
import os
import runpy
import sys
import warnings
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _hot_modules() -> list[str]:
    """The one HOT list, from trio_uring/_pure.py run as a script (as the Makefile runs it:
    it needs only the standard library, not the package's dependencies)."""
    return list(runpy.run_path(str(HERE / "trio_uring" / "_pure.py"))["HOT"])


#: What this build made, and why not more: written into the package as
#: trio_uring/_build_record.json (see trio_uring._pure.build_record).
RECORD_NAME = "_build_record.json"
record: dict[str, str | None] = {"hot_path": "compiled", "hot_path_reason": None,
                                 "ring_extension": "built", "ring_extension_reason": None}  # fmt: skip


def _warn(message: str) -> None:
    record.update(hot_path="pure", hot_path_reason=message)
    warnings.warn(f"trio_uring: {message}; the hot path stays pure Python", stacklevel=1)
    print(f"WARNING: trio_uring: {message}; the hot path stays pure Python", file=sys.stderr)


def _warn_ringext(message: str) -> None:
    record.update(ring_extension="not built", ring_extension_reason=message)
    warnings.warn(f"trio_uring: {message}; the ring is driven through cffi", stacklevel=1)
    print(f"WARNING: trio_uring: {message}; the ring is driven through cffi", file=sys.stderr)


HOT = _hot_modules()
# setup.py also runs only to write metadata (pip's egg_info/dist_info steps): no need
# to run mypyc (most of the build's time) there.
_METADATA_ONLY = {"egg_info", "dist_info", "sdist"}
_commands = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
_metadata_only = bool(_commands) and _commands[0] in _METADATA_ONLY
ext_modules = []
if os.environ.get("TRIO_URING_COMPILE", "1") == "0":
    record.update(
        hot_path="pure",
        hot_path_reason="TRIO_URING_COMPILE=0 at install",
        ring_extension="not built",
        ring_extension_reason="TRIO_URING_COMPILE=0 at install",
    )
elif not _metadata_only:
    try:
        from mypyc.build import mypycify

        os.chdir(HERE)  # mypycify takes paths relative to the project (and its mypy config)
        ext_modules = mypycify(
            [name.replace(".", "/") + ".py" for name in HOT],
            group_name="trio_uring._hot",
            opt_level="3",
        )
    except (Exception, SystemExit) as exc:  # mypy reports type errors by exiting
        _warn(f"mypyc could not compile the hot path ({exc!r})")
        ext_modules = []
for _ext in ext_modules:
    # mypyc compiles with -Werror: a warning a newer C compiler finds in the generated
    # code must not turn a working build into the pure fallback.
    _ext.extra_compile_args.append("-Wno-error")
_COMPILED = {ext.name for ext in ext_modules}
#: The extension for the ring's hot calls (trio_uring/_core/_ringext.c): optional too.
RINGEXT = "trio_uring._core._ringext"
if os.environ.get("TRIO_URING_COMPILE", "1") != "0":
    ext_modules.append(
        Extension(
            RINGEXT,
            ["trio_uring/_core/_ringext.c"],
            depends=["trio_uring/_core/_ring_api.h"],
            extra_compile_args=["-O2", "-std=gnu11"],
        )
    )


def _remove_compiled(root: Path, ringext: bool = True) -> None:
    """Delete compiled hot modules (and, with ``ringext``, the ring extension) an
    earlier build left under ``root`` (a pure build must not ship or import them:
    Python prefers the extension to the .py file)."""
    for name in [*HOT, "trio_uring._hot__mypyc", *([RINGEXT] if ringext else [])]:
        *package, leaf = name.split(".")
        for stale in root.joinpath(*package).glob(leaf + ".*.so"):
            stale.unlink()


class BuildExt(build_ext):
    """Builds the cffi module (must succeed), then the ring extension (may fail: then
    cffi on the hot path), then the mypyc ones (may fail: then pure)."""

    def _in_source(self) -> bool:
        """Whether the extensions go beside the .py files (editable install, --inplace)."""
        return bool(self.inplace or getattr(self, "editable_mode", False))

    def run(self) -> None:
        if not _COMPILED:
            _remove_compiled(Path(self.build_lib))
            if self._in_source():
                _remove_compiled(HERE)
        super().run()
        self._write_record()

    def _write_record(self) -> None:
        """Record what was built (and why not more) in the package, where
        ``trio_uring._pure.build_record()`` finds it."""
        text = json.dumps(record, indent=1) + "\n"
        roots = [Path(self.build_lib), *([HERE] if self._in_source() else [])]
        for root in roots:
            (root / "trio_uring").mkdir(parents=True, exist_ok=True)
            (root / "trio_uring" / RECORD_NAME).write_text(text)

    def _build_ringext(self, ext: Extension) -> bool:
        """Build the ring extension; on failure warn and leave none behind."""
        self.extensions = [ext]
        try:
            super().build_extensions()
        except Exception as exc:  # CompileError, LinkError, missing headers
            _warn_ringext(f"the ring extension failed to build ({exc!r})")
            Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            return False
        return True

    def build_extensions(self) -> None:
        everything = self.extensions
        ringext = [e for e in everything if e.name == RINGEXT]
        plain = [e for e in everything if e.name not in _COMPILED and e.name != RINGEXT]
        hot = [e for e in everything if e.name in _COMPILED]
        try:
            self.extensions = plain
            super().build_extensions()
            if ringext and not self._build_ringext(ringext[0]):
                everything = [e for e in everything if e.name != RINGEXT]
            if hot:
                self.extensions = hot
                try:
                    super().build_extensions()
                except Exception as exc:  # CompileError, LinkError, missing headers
                    _warn(f"the compiled hot path failed to build ({exc!r})")
                    for ext in hot:  # no half-built set: a module without its group fails
                        out = Path(self.get_ext_fullpath(ext.name))
                        out.unlink(missing_ok=True)
                    everything = [e for e in everything if e.name not in _COMPILED]
                    _remove_compiled(Path(self.build_lib), ringext=False)
                    if self._in_source():
                        _remove_compiled(HERE, ringext=False)
        finally:
            self.extensions = everything


class BuildPy(build_py):
    """Also copies the documentation pages (docs/*.rst) into the package as
    trio_uring/_docs/, for ``python -m trio_uring docs`` where no checkout is (an
    editable install reads the checkout's docs/)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False) or not (HERE / "docs").is_dir():
            return
        target = Path(self.build_lib) / "trio_uring" / "_docs"
        target.mkdir(parents=True, exist_ok=True)
        for page in sorted((HERE / "docs").glob("*.rst")):
            self.copy_file(str(page), str(target / page.name))


setup(
    cffi_modules=["trio_uring/_core/_build_ring.py:ffibuilder"],
    ext_modules=ext_modules,
    cmdclass={"build_ext": BuildExt, "build_py": BuildPy},
)
