"""Validate the Kubernetes manifests offline: python .ci/validate_k8s.py k8s

Every directory with a ``kustomization.yaml`` (the base and each overlay) is rendered
the way ``kubectl apply -k`` would render it, and the result is checked:

- strictly against the Kubernetes schemas (kubernetes-validate: unknown fields are errors);
- for references: what a Service, PodDisruptionBudget, HorizontalPodAutoscaler, Ingress or
  StatefulSet points to exists and matches, and every ConfigMap, Secret and
  PersistentVolumeClaim a pod reads exists (the ConfigMaps and Secrets created out of band
  are the ones in ``*.example.yaml`` files);
- for hardening: every container runs as non-root, without privilege escalation, with
  all capabilities dropped, a read-only root filesystem and resource requests.

Other YAML files that no kustomization uses as a patch (the ``*.example.yaml`` files)
are validated on their own. No kustomize binary is packaged for PyPI, npm or Debian, so
the rendering is done here, for the subset of kustomize the manifests use: resources
(files and directories), ``namespace``, ``labels``, ``images`` and strategic-merge
``patches`` (merging lists of containers, volumes, env and the like by their keys,
deleting a field with ``null`` and a resource with ``$patch: delete``). Anything else in a
kustomization is an error, never silently ignored. When ``kubectl`` is on the PATH, its
own rendering (``kubectl kustomize``) must equal this one.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.33.0"
KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "namespace", "labels", "resources", "patches", "images"}
# Strategic merge: lists merged item by item on these keys; every other list is replaced.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass", "IngressClass"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


class RenderError(Exception):
    """The kustomization uses something this renderer does not do, or is inconsistent."""


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def identity(doc: dict[str, Any]) -> tuple[str, str]:
    return doc.get("kind", ""), doc.get("metadata", {}).get("name", "")


# --- Rendering ---------------------------------------------------------------------------


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _list_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":  # container ports merge on containerPort, a Service's on port
        return "containerPort" if any(isinstance(i, dict) and "containerPort" in i for i in items) else "port"
    return MERGE_KEYS.get(field)


def strategic_merge(original: Any, patch: Any, field: str = "") -> Any:
    """``patch`` merged into ``original`` (neither is changed)."""
    if isinstance(original, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(original)
        for key, value in patch.items():
            if key.startswith("$"):
                raise RenderError(f"unsupported strategic-merge directive {key}")
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value, key)
            else:
                merged[key] = _without_nulls(value)
        return merged
    if isinstance(original, list) and isinstance(patch, list):
        key = _list_key(field, original + patch)
        if key is None:
            return _without_nulls(patch)
        merged_list = copy.deepcopy(original)
        for item in patch:
            match = next((i for i, old in enumerate(merged_list) if old.get(key) == item.get(key)), None)
            if match is None:
                merged_list.append(_without_nulls(item))
            else:
                merged_list[match] = strategic_merge(merged_list[match], item)
        return merged_list
    return _without_nulls(patch)


def _pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    if doc.get("kind") in WORKLOADS:
        return [spec.get("template", {}).get("spec", {})]
    return []


def _set_images(doc: dict[str, Any], images: list[dict[str, Any]]) -> None:
    for pod in _pod_specs(doc):
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            name, _, tag = container["image"].partition(":")
            for image in images:
                if image["name"] == name:
                    new_name = image.get("newName", name)
                    new_tag = image.get("newTag", tag)
                    container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name


def render(directory: Path) -> list[dict[str, Any]]:
    """The resources ``kubectl kustomize directory`` produces (for the supported subset)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - KUSTOMIZATION_FIELDS
    if unsupported:
        raise RenderError(f"{directory}: unsupported kustomization fields {sorted(unsupported)}")
    docs: list[dict[str, Any]] = []
    for ref in kustomization.get("resources", []):
        path = directory / ref
        if path.is_dir():
            docs.extend(render(path))
        elif path.is_file():
            docs.extend(load_docs(path))
        else:
            raise RenderError(f"{directory}: resource {ref} does not exist")
    seen: set[tuple[str, str]] = set()
    for doc in docs:
        if identity(doc) in seen:
            raise RenderError(f"{directory}: {'/'.join(identity(doc))} is defined twice")
        seen.add(identity(doc))

    if "namespace" in kustomization:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
    for label_set in kustomization.get("labels", []):
        if set(label_set) - {"pairs", "includeSelectors", "includeTemplates"} or label_set.get("includeSelectors"):
            raise RenderError(f"{directory}: only labels with pairs (and includeTemplates) are supported")
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(label_set["pairs"])
            if label_set.get("includeTemplates") and doc["kind"] in WORKLOADS:
                template = doc["spec"]["template"].setdefault("metadata", {})
                template.setdefault("labels", {}).update(label_set["pairs"])
    for entry in kustomization.get("patches", []):
        if set(entry) - {"path", "patch"} or len(entry) != 1:
            raise RenderError(f"{directory}: a patch is a path or an inline patch, with no target: {entry}")
        patch_docs = load_docs(directory / entry["path"]) if "path" in entry else load_docs_text(entry["patch"])
        if len(patch_docs) > 1 and any(p.get("$patch") == "delete" for p in patch_docs):
            raise RenderError(
                f"{directory}: a $patch: delete goes alone in its patch (kustomize 5.5 crashes otherwise)"
            )
        for patch in patch_docs:
            index = next((i for i, doc in enumerate(docs) if identity(doc) == identity(patch)), None)
            if index is None:
                raise RenderError(f"{directory}: the patch for {'/'.join(identity(patch))} matches no resource")
            if patch.get("$patch") == "delete":
                del docs[index]
            else:
                merged = strategic_merge(docs[index], patch)
                if merged.get("apiVersion") != docs[index].get("apiVersion"):
                    raise RenderError(f"{directory}: the patch for {'/'.join(identity(patch))} changes its apiVersion")
                docs[index] = merged
    for doc in docs:
        _set_images(doc, kustomization.get("images", []))
    return docs


def kustomizations(root: Path) -> list[Path]:
    return sorted(path.parent for path in root.rglob("kustomization.yaml"))


def patch_files(root: Path) -> set[Path]:
    files = set()
    for directory in kustomizations(root):
        for entry in yaml.safe_load((directory / "kustomization.yaml").read_text()).get("patches", []):
            if "path" in entry:
                files.add((directory / entry["path"]).resolve())
    return files


# --- Checks ------------------------------------------------------------------------------


def schema_problems(docs: list[dict[str, Any]]) -> list[str]:
    problems = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{'/'.join(identity(doc))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{'/'.join(identity(doc))}: no schema for {exc}")
    return problems


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _template_labels(docs: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [d["spec"]["template"].get("metadata", {}).get("labels", {}) for d in docs if d.get("kind") in WORKLOADS]


def reference_problems(docs: list[dict[str, Any]], external: set[tuple[str, str]]) -> list[str]:
    """Dangling or mismatched references between the rendered resources; ``external``: the
    (kind, name) of the ConfigMaps and Secrets created out of band."""
    problems = []
    names = {identity(d) for d in docs}
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    pods = _template_labels(docs)
    for doc in docs:
        kind, name = identity(doc)
        spec = doc.get("spec", {})
        where = f"{kind}/{name}"
        template_labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
        if (
            kind in WORKLOADS
            and kind != "Job"
            and not _selects(spec["selector"].get("matchLabels", {}), template_labels)
        ):
            problems.append(f"{where}: its selector does not match its pod template")
        if kind == "Service" and not any(_selects(spec.get("selector", {}), labels) for labels in pods):
            problems.append(f"{where}: selects no pod")
        if kind == "PodDisruptionBudget" and not any(
            _selects(spec["selector"].get("matchLabels", {}), labels) for labels in pods
        ):
            problems.append(f"{where}: selects no pod")
        if kind == "HorizontalPodAutoscaler":
            target = spec["scaleTargetRef"]
            if (target["kind"], target["name"]) not in names:
                problems.append(f"{where}: scales the missing {target['kind']}/{target['name']}")
        if kind == "StatefulSet":
            governing = services.get(spec["serviceName"])
            if governing is None or governing["spec"].get("clusterIP") != "None":
                problems.append(f"{where}: its serviceName {spec['serviceName']} is not a headless Service")
        if kind == "Ingress":
            for rule in spec.get("rules", []):
                for path in rule.get("http", {}).get("paths", []):
                    backend = path["backend"]["service"]
                    service = services.get(backend["name"])
                    port = backend["port"]
                    if service is None:
                        problems.append(f"{where}: {path['path']} goes to the missing Service {backend['name']}")
                    elif not any(
                        p.get("name") == port.get("name") or p.get("port") == port.get("number")
                        for p in service["spec"]["ports"]
                    ):
                        problems.append(f"{where}: {path['path']} goes to a port {backend['name']} does not have")
        for pod in _pod_specs(doc):
            for ref_kind, ref_name in _pod_references(pod):
                if (ref_kind, ref_name) not in names | external:
                    problems.append(f"{where}: reads the missing {ref_kind}/{ref_name}")
    return problems


def _pod_references(pod: dict[str, Any]) -> list[tuple[str, str]]:
    refs = []
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            refs.append(("ConfigMap", volume["configMap"]["name"]))
        if "secret" in volume:
            refs.append(("Secret", volume["secret"]["secretName"]))
        if "persistentVolumeClaim" in volume:
            refs.append(("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]))
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                refs.append(("ConfigMap", source["configMapRef"]["name"]))
            if "secretRef" in source:
                refs.append(("Secret", source["secretRef"]["name"]))
        for env in container.get("env", []):
            value_from = env.get("valueFrom", {})
            if "configMapKeyRef" in value_from:
                refs.append(("ConfigMap", value_from["configMapKeyRef"]["name"]))
            if "secretKeyRef" in value_from:
                refs.append(("Secret", value_from["secretKeyRef"]["name"]))
    return refs


def hardening_problems(docs: list[dict[str, Any]]) -> list[str]:
    problems = []
    for doc in docs:
        for pod in _pod_specs(doc):
            pod_context = pod.get("securityContext", {})
            for container in pod.get("containers", []) + pod.get("initContainers", []):
                where = f"{'/'.join(identity(doc))} container {container['name']}"
                context = container.get("securityContext", {})
                if not context.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
                    problems.append(f"{where}: may run as root")
                if context.get("allowPrivilegeEscalation") is not False:
                    problems.append(f"{where}: allows privilege escalation")
                if context.get("capabilities", {}).get("drop") != ["ALL"]:
                    problems.append(f"{where}: keeps Linux capabilities")
                if context.get("readOnlyRootFilesystem") is not True:
                    problems.append(f"{where}: has a writable root filesystem")
                resources = container.get("resources", {})
                if not {"cpu", "memory"} <= set(resources.get("requests", {})) or "memory" not in resources.get(
                    "limits", {}
                ):
                    problems.append(f"{where}: needs cpu and memory requests and a memory limit")
    return problems


def kubectl_problems(directory: Path, docs: list[dict[str, Any]]) -> list[str] | None:
    """Differences from ``kubectl kustomize``; None when kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        return [f"kubectl kustomize failed: {result.stderr.strip()}"]
    theirs = {identity(d): d for d in load_docs_text(result.stdout)}
    ours = {identity(d): d for d in docs}
    problems = [f"{'/'.join(k)}: only kubectl renders it" for k in theirs.keys() - ours.keys()]
    problems += [f"{'/'.join(k)}: kubectl does not render it" for k in ours.keys() - theirs.keys()]
    for key in theirs.keys() & ours.keys():
        if theirs[key] != ours[key]:
            problems.append(
                f"{'/'.join(key)}: rendered differently from kubectl kustomize:\n"
                f"  ours:    {json.dumps(ours[key], sort_keys=True)}\n"
                f"  kubectl: {json.dumps(theirs[key], sort_keys=True)}"
            )
    return problems


def load_docs_text(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def validate(root: Path, *, compare_with_kubectl: bool = True) -> list[str]:
    problems: list[str] = []
    examples = sorted(root.rglob("*.example.yaml"))
    external = {identity(d) for path in examples for d in load_docs(path) if d["kind"] in {"ConfigMap", "Secret"}}
    for directory in kustomizations(root):
        try:
            docs = render(directory)
        except (RenderError, OSError, yaml.YAMLError) as exc:
            problems.append(f"{directory}: {exc}")
            continue
        found = schema_problems(docs) + reference_problems(docs, external) + hardening_problems(docs)
        if compare_with_kubectl:
            differences = kubectl_problems(directory, docs)
            if differences is None:
                print(f"{directory}: kubectl not installed, not compared with kubectl kustomize")
            found += differences or []
        problems += [f"{directory}: {p}" for p in found]
        print(f"{directory}: rendered and checked {len(docs)} resources")
    used = patch_files(root) | {(d / "kustomization.yaml").resolve() for d in kustomizations(root)}
    rendered = {
        (d / ref).resolve()
        for d in kustomizations(root)
        for ref in yaml.safe_load((d / "kustomization.yaml").read_text()).get("resources", [])
    }
    for path in sorted(root.rglob("*.yaml")):
        if path.resolve() in used or path.resolve() in rendered:
            continue
        problems += [f"{path}: {p}" for p in schema_problems(load_docs(path))]
        print(f"{path}: checked on its own")
    return problems


if __name__ == "__main__":
    found = validate(Path(sys.argv[1] if len(sys.argv) > 1 else "k8s"))
    for problem in found:
        print(problem, file=sys.stderr)
    sys.exit(1 if found else 0)
