"""Build the compiled core in place: ``python -m matching.engine._native.build``.

Uses the system C compiler and the Python headers already on the machine;
nothing is downloaded.  setuptools drives the compiler when it is installed;
otherwise (or with ``--direct``) the compiler named by ``sysconfig`` is
called directly.  The shared object lands next to ``_book.c``
(``_book<EXT_SUFFIX>``, ignored by git) and is picked up on the next import of
``matching.engine``.  Exit status is non-zero if the build fails; the
pure-Python engine keeps working either way.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
SOURCE = HERE / "_book.c"
FLAGS = ["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]


def target() -> Path:
    return HERE / f"_book{sysconfig.get_config_var('EXT_SUFFIX')}"


def build_with_setuptools(verbose: bool = False) -> Path:
    from setuptools import Distribution, Extension

    ext = Extension(
        "matching.engine._native._book",
        sources=[str(SOURCE.relative_to(ROOT))],
        extra_compile_args=FLAGS,
    )
    dist = Distribution({"name": "kootabase-engine-core", "ext_modules": [ext]})
    cmd = dist.get_command_obj("build_ext")
    cmd.force = True
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        with tempfile.TemporaryDirectory(prefix="engine-core-") as tmp:
            cmd.build_temp = tmp
            cmd.build_lib = tmp
            dist.verbose = verbose
            cmd.ensure_finalized()
            cmd.run()
            return install(Path(cmd.get_ext_fullpath(ext.name)))
    finally:
        os.chdir(cwd)


def build_direct(verbose: bool = False) -> Path:
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    include = sysconfig.get_paths()["include"]
    out = target()
    with tempfile.TemporaryDirectory(prefix="engine-core-") as tmp:
        built = Path(tmp) / out.name
        argv = [*cc, *FLAGS, "-fPIC", "-shared", f"-I{include}", str(SOURCE), "-o", str(built)]
        if verbose:
            print(" ".join(argv))
        subprocess.run(argv, check=True)
        return install(built)


def install(built: Path) -> Path:
    """Move the built module into place atomically (running processes keep the old one)."""
    out = target()
    staging = out.with_name(out.name + ".new")
    shutil.copyfile(built, staging)
    os.replace(staging, out)
    return out


def build(verbose: bool = False, direct: bool = False) -> Path:
    if not direct:
        try:
            import setuptools  # noqa: F401
        except ImportError:
            direct = True
    return build_direct(verbose) if direct else build_with_setuptools(verbose)


if __name__ == "__main__":
    path = build(verbose="-v" in sys.argv, direct="--direct" in sys.argv)
    print(f"built {path}")
