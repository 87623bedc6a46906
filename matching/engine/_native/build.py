"""Build the compiled core in place: ``python -m matching.engine._native.build``.

Uses setuptools with the system C compiler and the Python headers already on
the machine; nothing is downloaded.  The shared object lands next to
``_book.c`` (``_book.<python-tag>.so``) and is picked up on the next import of
``matching.engine``.  Exit status is non-zero if the build fails; the pure
Python engine keeps working either way.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def build(verbose: bool = False) -> Path:
    from setuptools import Distribution, Extension

    ext = Extension(
        "matching.engine._native._book",
        sources=[str((HERE / "_book.c").relative_to(ROOT))],
        extra_compile_args=["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    )
    dist = Distribution({"name": "kootabase-engine-core", "ext_modules": [ext]})
    cmd = dist.get_command_obj("build_ext")
    cmd.inplace = True
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
            return ROOT / cmd.get_ext_fullpath(ext.name)
    finally:
        os.chdir(cwd)


if __name__ == "__main__":
    path = build(verbose="-v" in sys.argv)
    print(f"built {path}")
