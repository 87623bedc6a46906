"""The engine is a pure library: no Django, no I/O, no clock, no randomness."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[1] / "engine"
FORBIDDEN = {
    "django",
    "time",
    "datetime",
    "random",
    "secrets",
    "os",
    "io",
    "socket",
    "threading",
    "asyncio",
    "subprocess",
    "pathlib",
    "logging",
    "uuid",
    "sqlite3",
}
# the build hook compiles the extension; it is never imported by the engine itself
BUILD_TOOLS = {"build.py"}


def test_engine_imports_without_django() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'django' or name.startswith('django.'):\n"
        "            raise ImportError('django is not allowed in the engine')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import matching.engine as e\n"
        "b = e.OrderBook()\n"
        "b.apply(e.PlaceLimit(1, 1, 1, e.BUY, 100, 1))\n"
        "assert not any(m == 'django' or m.startswith('django.') for m in sys.modules)\n"
    )
    root = ENGINE.parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_engine_sources_import_nothing_impure() -> None:
    for path in ENGINE.rglob("*.py"):
        if path.name in BUILD_TOOLS:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
