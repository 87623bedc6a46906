"""Validate the Kubernetes manifests offline.

Every resource file is checked strictly against the bundled Kubernetes schemas
(kubernetes-validate), and every kustomization's resources, patches and components must
exist. Usage: python .ci/validate_k8s.py k8s
"""

from __future__ import annotations

import sys
from pathlib import Path

import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.33.0"


def validate(root: Path) -> list[str]:
    problems: list[str] = []
    checked = 0
    for path in sorted(root.rglob("*.yaml")):
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        if path.name == "kustomization.yaml":
            for doc in docs:
                refs = list(doc.get("resources", [])) + list(doc.get("components", []))
                refs += [
                    p["path"] if isinstance(p, dict) else p
                    for p in doc.get("patches", [])
                    if not isinstance(p, dict) or "path" in p
                ]
                for ref in refs:
                    if not (path.parent / ref).exists():
                        problems.append(f"{path}: refers to missing {ref}")
            continue
        for doc in docs:
            if doc.get("kind") in {"Kustomization", "Component"}:
                continue
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
                checked += 1
            except kubernetes_validate.ValidationError as exc:
                problems.append(f"{path}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                problems.append(f"{path}: no schema for {exc}")
    print(f"validated {checked} Kubernetes resources under {root}")
    return problems


if __name__ == "__main__":
    found = validate(Path(sys.argv[1] if len(sys.argv) > 1 else "k8s"))
    for problem in found:
        print(problem, file=sys.stderr)
    sys.exit(1 if found else 0)
