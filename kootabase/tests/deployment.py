"""What the deployment tests read: the Kubernetes manifests as rendered by
``.ci/validate_k8s.py`` and the image's default command."""

from __future__ import annotations

import importlib.util
import json
import re
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"


@cache
def validator() -> ModuleType:
    """``.ci/validate_k8s.py`` (CI runs it as a script; it is not a package)."""
    spec = importlib.util.spec_from_file_location("validate_k8s", ROOT / ".ci" / "validate_k8s.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rendered(overlay: str) -> list[dict[str, Any]]:
    """The resources of ``k8s/base`` or ``k8s/overlays/<overlay>``."""
    return validator().render(K8S / overlay if overlay == "base" else K8S / "overlays" / overlay)


def dockerfile_cmd() -> list[str]:
    """The image's default command (the web server), from the Dockerfile's CMD."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    [cmd] = re.findall(r"^CMD (\[.*\])\s*$", text, flags=re.M)
    return json.loads(cmd)


def dockerfile_collectstatic_env() -> dict[str, str]:
    """The variables the build stage sets for ``collectstatic``, from its RUN line."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    [run] = [line for line in text.splitlines() if line.startswith("RUN ") and "collectstatic" in line]
    before = run.removeprefix("RUN ").split("python manage.py collectstatic")[0]
    return dict(pair.split("=", 1) for pair in before.split() if "=" in pair)
