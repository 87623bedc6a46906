"""The deployment: the offline renderer and checks of ``.ci/validate_k8s.py``, the shape of
the topology in every overlay (one beat, one writer per market, every queue consumed,
probes, scaling), and the image's build and settings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from aml.blocklist import parse as parse_blocklist
from kootabase.celery import BEAT_SCHEDULE, QUEUES, TASK_ROUTES
from kootabase.tests.deployment import (
    K8S,
    ROOT,
    dockerfile_cmd,
    dockerfile_collectstatic_env,
    rendered,
    validator,
)
from orders.management.commands.run_matcher import shard_map_read

OVERLAYS = ("trial", "production")
IMAGE = "ghcr.io/kootabase/kootabase"


def kustomize(tmp_path: Path, files: dict[str, Any]) -> Path:
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        docs = content if isinstance(content, list) else [content]
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return tmp_path


def deployment(name: str, **spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "kootabase", "env": [{"name": "A", "value": "1"}]},
                        {"name": "sidecar", "image": "busybox:1"},
                    ]
                },
            },
            **spec,
        },
    }


def by_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc["spec"]["template"]["spec"]["containers"]


# --- the renderer --------------------------------------------------------------------------


def test_a_patch_merges_lists_by_their_keys_and_null_deletes(tmp_path):
    patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "revisionHistoryLimit": None,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "env": [{"name": "B", "value": "2"}], "args": ["serve"]},
                        {"name": "extra", "image": "extra:1"},
                    ]
                }
            },
        },
    }
    root = kustomize(
        tmp_path,
        {
            "base/kustomization.yaml": {"resources": ["web.yaml"]},
            "base/web.yaml": deployment("web", revisionHistoryLimit=5),
            "overlay/kustomization.yaml": {"resources": ["../base"], "patches": [{"path": "patch.yaml"}]},
            "overlay/patch.yaml": patch,
        },
    )
    [web] = validator().render(root / "overlay")
    assert web["spec"]["replicas"] == 3
    assert "revisionHistoryLimit" not in web["spec"]
    assert [c["name"] for c in containers(web)] == ["app", "sidecar", "extra"]
    app = containers(web)[0]
    env = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert app == {"name": "app", "image": "kootabase", "env": env, "args": ["serve"]}


def test_a_delete_patch_removes_the_resource_and_must_stand_alone(tmp_path):
    gone = {"$patch": "delete", "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "b"}}
    root = kustomize(
        tmp_path,
        {
            "kustomization.yaml": {"resources": ["all.yaml"], "patches": [{"path": "gone.yaml"}]},
            "all.yaml": [deployment("a"), deployment("b")],
            "gone.yaml": gone,
        },
    )
    assert [d["metadata"]["name"] for d in validator().render(root)] == ["a"]
    (root / "gone.yaml").write_text(yaml.safe_dump_all([gone, {**gone, "metadata": {"name": "a"}}]))
    with pytest.raises(validator().RenderError, match="goes alone"):
        validator().render(root)


def test_namespace_labels_and_images(tmp_path):
    root = kustomize(
        tmp_path,
        {
            "kustomization.yaml": {
                "namespace": "ns",
                "labels": [{"pairs": {"part-of": "kb"}, "includeSelectors": False}],
                "images": [{"name": "kootabase", "newName": "registry/kb", "newTag": "1.2"}],
                "resources": ["web.yaml"],
            },
            "web.yaml": deployment("web"),
        },
    )
    [web] = validator().render(root)
    assert web["metadata"] == {"name": "web", "namespace": "ns", "labels": {"part-of": "kb"}}
    assert web["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert [c["image"] for c in containers(web)] == ["registry/kb:1.2", "busybox:1"]


@pytest.mark.parametrize(
    ("kustomization", "message"),
    [
        ({"resources": ["web.yaml"], "configMapGenerator": []}, "unsupported kustomization fields"),
        ({"resources": ["web.yaml"], "patches": [{"path": "p.yaml", "target": {"kind": "Deployment"}}]}, "no target"),
        ({"resources": ["web.yaml"], "patches": [{"patch": "kind: Deployment\nmetadata: {name: x}"}]}, "matches no"),
        ({"resources": ["web.yaml", "web.yaml"]}, "defined twice"),
        ({"resources": ["missing.yaml"]}, "does not exist"),
        ({"resources": ["web.yaml"], "labels": [{"pairs": {"a": "b"}, "includeSelectors": True}]}, "only labels"),
    ],
)
def test_what_the_renderer_does_not_do_is_an_error(tmp_path, kustomization, message):
    root = kustomize(tmp_path, {"kustomization.yaml": kustomization, "web.yaml": deployment("web")})
    with pytest.raises(validator().RenderError, match=message):
        validator().render(root)


def test_dangling_references_are_found():
    web = deployment("web")
    web["spec"]["template"]["spec"]["containers"][0]["envFrom"] = [
        {"configMapRef": {"name": "absent-config"}},
        {"secretRef": {"name": "made-elsewhere"}},
        {"secretRef": {"name": "absent-secret"}},
    ]
    docs = [
        web,
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lost"}, "spec": {"selector": {"app": "x"}}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]},
        },
        {
            "kind": "Ingress",
            "metadata": {"name": "gw"},
            "spec": {
                "rules": [
                    {
                        "http": {
                            "paths": [
                                {"path": "/a", "backend": {"service": {"name": "nowhere", "port": {"number": 80}}}},
                                {"path": "/b", "backend": {"service": {"name": "web", "port": {"name": "grpc"}}}},
                            ]
                        }
                    }
                ]
            },
        },
        {
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "gone"}},
        },
        {**deployment("db"), "kind": "StatefulSet"},
    ]
    docs[-1]["spec"]["serviceName"] = "web"  # not headless
    web["spec"]["template"]["spec"]["volumes"] = [
        {"name": "files", "persistentVolumeClaim": {"claimName": "absent-claim"}},
        {"name": "list", "configMap": {"name": "list-made-elsewhere"}},
    ]
    web["spec"]["template"]["spec"]["containers"][0]["envFrom"].append({"secretRef": {"name": "list-made-elsewhere"}})
    external = {("Secret", "made-elsewhere"), ("ConfigMap", "list-made-elsewhere")}
    problems = validator().reference_problems(docs, external)
    assert problems == [
        "Deployment/web: reads the missing PersistentVolumeClaim/absent-claim",
        "Deployment/web: reads the missing ConfigMap/absent-config",
        "Deployment/web: reads the missing Secret/absent-secret",
        "Deployment/web: reads the missing Secret/list-made-elsewhere",  # out of band as a ConfigMap only
        "Service/lost: selects no pod",
        "Ingress/gw: /a goes to the missing Service nowhere",
        "Ingress/gw: /b goes to a port web does not have",
        "HorizontalPodAutoscaler/h: scales the missing Deployment/gone",
        "StatefulSet/db: its serviceName web is not a headless Service",
    ]


def test_configmaps_and_secrets_made_out_of_band_are_the_example_files(tmp_path):
    web = deployment("web")
    web["spec"]["template"]["spec"]["volumes"] = [{"name": "list", "configMap": {"name": "the-list"}}]
    example = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "the-list"}, "data": {"list.txt": ""}}
    root = kustomize(
        tmp_path, {"kustomization.yaml": {"resources": ["web.yaml"]}, "web.yaml": web, "list.example.yaml": example}
    )

    def dangling() -> list[str]:
        return [p for p in validator().validate(root, compare_with_kubectl=False) if "reads the missing" in p]

    assert dangling() == []
    (root / "list.example.yaml").unlink()
    assert dangling() == [f"{root}: Deployment/web: reads the missing ConfigMap/the-list"]


def test_unhardened_containers_are_found():
    web = deployment("web")
    web["spec"]["template"]["spec"]["containers"].pop()
    assert validator().hardening_problems([web]) == [
        "Deployment/web container app: may run as root",
        "Deployment/web container app: allows privilege escalation",
        "Deployment/web container app: keeps Linux capabilities",
        "Deployment/web container app: has a writable root filesystem",
        "Deployment/web container app: needs cpu and memory requests and a memory limit",
    ]


# --- the repository's manifests -------------------------------------------------------------


def test_every_manifest_renders_and_passes_every_check():
    assert validator().validate(K8S, compare_with_kubectl=False) == []


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_the_rendering_is_kubectls(overlay):
    directory = K8S / overlay if overlay == "base" else K8S / "overlays" / overlay
    assert validator().kubectl_problems(directory, rendered(overlay)) == []


def worker_queues(docs: list[dict[str, Any]]) -> dict[str, set[str]]:
    queues = {}
    for doc in docs:
        if doc["kind"] == "Deployment":
            args = containers(doc)[0].get("args", [])
            if args[:4] == ["celery", "-A", "kootabase", "worker"]:
                queues[doc["metadata"]["name"]] = set(args[args.index("--queues") + 1].split(","))
    return queues


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_every_queue_and_every_scheduled_task_has_a_worker(overlay):
    queues = worker_queues(rendered(overlay))
    consumed = set().union(*queues.values())
    assert consumed == set(QUEUES)
    assert queues["kootabase-scanner"] == {"blockchain"}  # the deposit scanners
    for entry in BEAT_SCHEDULE.values():
        module = entry["task"].rsplit(".", 1)[0] + ".*"
        assert TASK_ROUTES.get(module, {"queue": "default"})["queue"] in consumed


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_one_scheduler_and_one_writer_per_market(overlay, tmp_path):
    docs = by_name(rendered(overlay))
    beat = docs["Deployment", "kootabase-beat"]
    assert (beat["spec"]["replicas"], beat["spec"]["strategy"]) == (1, {"type": "Recreate"})
    beats = [
        d
        for d in docs.values()
        if d["kind"] in {"Deployment", "StatefulSet"} and "beat" in containers(d)[0].get("args", [])
    ]
    assert beats == [beat]

    matcher = docs["StatefulSet", "kootabase-matcher"]
    [container] = containers(matcher)
    args = container["args"]
    assert args[:3] == ["python", "manage.py", "run_matcher"]
    assert args[args.index("--shard") + 1] == "$(MATCHER_SHARD)"
    [env] = container["env"]
    assert env["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "shards")
    assert args[args.index("--shard-file") + 1] == f"{mount['mountPath']}/shards.json"
    shards_config = docs["ConfigMap", "kootabase-matcher-shards"]
    (tmp_path / "shards.json").write_text(shards_config["data"]["shards.json"])
    shards = shard_map_read(path=tmp_path / "shards.json")  # refuses a market in two shards
    assert sorted(shards) == list(range(matcher["spec"]["replicas"]))
    assert all(shards.values())
    runs_matcher = [
        d
        for d in docs.values()
        if d["kind"] in {"Deployment", "StatefulSet", "Job"} and "run_matcher" in containers(d)[0].get("args", [])
    ]
    assert runs_matcher == [matcher]


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_the_web_tier_is_probed_scaled_and_protected(overlay):
    docs = by_name(rendered(overlay))
    web = docs["Deployment", "kootabase-web"]
    [container] = containers(web)
    assert "args" not in container and "command" not in container  # the image's CMD: uvicorn --workers 2
    assert dockerfile_cmd()[dockerfile_cmd().index("--workers") + 1] == "2"
    probes = {name: container[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {name: probe["path"] for name, probe in probes.items()} == {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    assert all("httpHeaders" not in probe for probe in probes.values())  # Host: the pod's IP, allowed by POD_IP
    [pod_ip] = [e for e in container["env"] if e["name"] == "POD_IP"]
    assert pod_ip["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    config = docs["ConfigMap", "kootabase-config"]["data"]
    scraped_as = f"kootabase-web.{web['metadata']['namespace']}.svc"  # the metrics scraper's target
    assert scraped_as in config["ALLOWED_HOSTS"].split(",")
    assert "replicas" not in web["spec"]  # the autoscaler owns it
    hpa = docs["HorizontalPodAutoscaler", "kootabase-web"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "kootabase-web"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert ("PodDisruptionBudget", "kootabase-web") in docs
    if overlay != "trial":
        paths = {
            path["path"]: ingress
            for (kind, _), ingress in docs.items()
            if kind == "Ingress"
            for rule in ingress["spec"]["rules"]
            for path in rule["http"]["paths"]
        }
        public = ("/api/", "/admin/", "/static/", "/ws/")
        assert set(public) <= set(paths)
        assert all(path.startswith(public) for path in paths), sorted(paths)  # never /metrics or the probes
        annotations = paths["/ws/"]["metadata"]["annotations"]
        assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
        assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
        hosts = {rule["host"] for ingress in paths.values() for rule in ingress["spec"]["rules"]}
        assert hosts <= set(config["ALLOWED_HOSTS"].split(","))


def setting_of(docs: dict[tuple[str, str], dict[str, Any]], workload: dict[str, Any], name: str) -> str:
    """The value of the environment variable ``name`` in the workload's container: its own
    ``env``, else the last ConfigMap of its ``envFrom`` that has it."""
    [container] = containers(workload)
    value = None
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            value = docs["ConfigMap", source["configMapRef"]["name"]].get("data", {}).get(name, value)
    for env in container.get("env", []):
        if env["name"] == name:
            value = env["value"]
    assert value, f"{workload['metadata']['name']} has no {name}"
    return value


def mount_of(workload: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The mount ``path`` lies in (the deepest), its volume, and the path inside the volume."""
    [container] = containers(workload)
    where = PurePosixPath(path)
    mounts = [m for m in container.get("volumeMounts", []) if where.is_relative_to(m["mountPath"])]
    assert mounts, f"{path} is on {workload['metadata']['name']}'s (read-only) root filesystem"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    [volume] = [v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    return mount, volume, str(where.relative_to(mount["mountPath"]))


def aml_blocklist_example() -> dict[str, Any]:
    [config_map] = [d for d in yaml.safe_load_all((K8S / "base" / "aml-blocklist.example.yaml").read_text()) if d]
    return config_map


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_kyc_documents_are_on_a_shared_volume_the_web_pods_can_write(overlay):
    docs = by_name(rendered(overlay))
    web = docs["Deployment", "kootabase-web"]
    mount, volume, _ = mount_of(web, setting_of(docs, web, "PRIVATE_MEDIA_ROOT"))
    assert not mount.get("readOnly") and "subPath" not in mount
    claim = docs["PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]]
    # Several web pods share it; the trial's one node (and one web pod) does with ReadWriteOnce.
    assert claim["spec"]["accessModes"] == (["ReadWriteOnce"] if overlay == "trial" else ["ReadWriteMany"])
    if overlay != "production":  # production's operator picks a ReadWriteMany class (docs/operations.md)
        assert "storageClassName" not in claim["spec"]  # the cluster's default
    # The process (uid 10001, not root) writes there: the volume is given to a group it is in.
    pod = web["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsUser"] != 0 and pod.get("fsGroup") not in (None, 0)
    # Only the web tier reads and writes KYC documents (no task touches them).
    users = {
        name
        for (kind, name), d in docs.items()
        if "template" in d.get("spec", {})
        for v in d["spec"]["template"]["spec"].get("volumes", [])
        if v.get("persistentVolumeClaim", {}).get("claimName") == claim["metadata"]["name"]
    }
    assert users == {"kootabase-web"}


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_every_pod_that_screens_reads_the_aml_block_list_from_its_config_map(overlay):
    docs = by_name(rendered(overlay))
    example = aml_blocklist_example()
    assert ("ConfigMap", example["metadata"]["name"]) not in docs  # out of band: a release never replaces it
    # The web tier screens transfers; deposits and withdrawals are screened by the blockchain tasks.
    blockchain_queue = TASK_ROUTES["blockchain.tasks.*"]["queue"]
    screening = {"kootabase-web"} | {name for name, q in worker_queues(docs.values()).items() if blockchain_queue in q}
    assert screening == {"kootabase-web", "kootabase-scanner"}
    for name in screening:
        workload = docs["Deployment", name]
        mount, volume, file = mount_of(workload, setting_of(docs, workload, "AML_BLOCKLIST_FILE"))
        assert volume["configMap"]["name"] == example["metadata"]["name"], name
        # A directory mount: a subPath would never see an updated list.
        assert mount["readOnly"] is True and "subPath" not in mount, name
        items = {item["path"]: item["key"] for item in volume["configMap"].get("items", [])}
        assert items.get(file, file) in example["data"], name
        assert volume["configMap"].get("defaultMode", 0o644) & 0o004, name  # readable by uid 10001


def test_the_example_aml_block_list_explains_itself_and_blocks_nobody():
    text = aml_blocklist_example()["data"]["blocklist.txt"]
    assert text.startswith("#") and "one blockchain address or email per line" in text
    assert parse_blocklist(text) == frozenset()


def test_settings_read_the_mounted_paths(tmp_path):
    config = by_name(rendered("base"))["ConfigMap", "kootabase-config"]["data"]
    names = ("PRIVATE_MEDIA_ROOT", "AML_BLOCKLIST_FILE")
    env = {"PATH": os.environ["PATH"], "KOOTABASE_VAR_DIR": str(tmp_path), **{n: config[n] for n in names}}
    code = "from kootabase import settings; print(" + ", ".join(f"settings.{n}" for n in names) + ")"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == [config[n] for n in names], done.stderr


def test_the_trial_runs_one_of_everything_with_its_own_database_and_redis():
    docs = by_name(rendered("trial"))
    workloads = {name: d for (kind, name), d in docs.items() if kind in {"Deployment", "StatefulSet"}}
    assert {name: d["spec"].get("replicas", 1) for name, d in workloads.items()} == dict.fromkeys(workloads, 1)
    assert docs["HorizontalPodAutoscaler", "kootabase-web"]["spec"]["minReplicas"] == 1
    assert {"kootabase-mariadb", "kootabase-redis"} <= set(workloads)
    assert not [name for kind, name in docs if kind == "Ingress"]
    assert {d["metadata"]["namespace"] for d in docs.values()} == {"kootabase-trial"}


def test_production_uses_external_services_and_pins_the_image():
    docs = by_name(rendered("production"))
    images = {c["image"] for d in docs.values() if "template" in d.get("spec", {}) for c in containers(d)}
    assert images == {f"{IMAGE}:0.1.0"}  # nothing but the application: the servers are external
    hpa = docs["HorizontalPodAutoscaler", "kootabase-web"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)
    assert docs["PodDisruptionBudget", "kootabase-web"]["spec"] == {
        "minAvailable": 2,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "kootabase-web"}},
    }
    assert {d["metadata"]["namespace"] for d in docs.values()} == {"kootabase"}


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_the_image_keeps_its_init_process(overlay):
    """The image's ENTRYPOINT is tini; a container ``command`` would replace it."""
    for doc in rendered(overlay):
        if "template" in doc.get("spec", {}):
            for container in containers(doc):
                if container["image"].startswith(IMAGE):
                    assert "command" not in container, doc["metadata"]["name"]


# --- the image and its settings --------------------------------------------------------------


@pytest.mark.parametrize(("pod_ip", "allowed"), [("10.1.2.3", "10.1.2.3"), ("fd00::7", "[fd00::7]")])
def test_the_pods_address_is_an_allowed_host(pod_ip, allowed, tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "POD_IP": pod_ip,
        "ALLOWED_HOSTS": "a.example",
        "KOOTABASE_VAR_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", "from kootabase import settings; print(','.join(settings.ALLOWED_HOSTS))"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == f"a.example,{allowed}", done.stderr


def test_the_image_builds_without_tools_and_runs_unprivileged():
    text = (ROOT / "Dockerfile").read_text()
    runtime = text[text.index("AS runtime") :]
    assert "build-essential" not in runtime and "-dev" not in runtime
    assert "\nUSER 10001\n" in runtime
    assert 'ENTRYPOINT ["tini", "--"]' in runtime
    assert "HEALTHCHECK" in runtime
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def test_the_image_collects_its_static_files_with_its_build_settings(tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        **dockerfile_collectstatic_env(),
        "STATIC_ROOT": str(tmp_path / "static"),
        "KOOTABASE_VAR_DIR": str(tmp_path / "var"),
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "static" / "staticfiles.json").read_text())
    assert any(name.startswith("admin/") for name in manifest["paths"])


@pytest.mark.parametrize("overlay", ["base", "production"])
def test_the_manifests_give_production_every_setting_it_requires(overlay, tmp_path):
    """The ConfigMap plus the keys of the out-of-band Secret start production settings
    (which refuse to start when one is missing) and pass the deployment checks."""
    docs = by_name(rendered(overlay))
    [secret] = [d for d in yaml.safe_load_all((K8S / "base" / "secret.example.yaml").read_text()) if d]
    env = {
        "PATH": os.environ["PATH"],
        **docs["ConfigMap", "kootabase-config"]["data"],
        **secret["stringData"],
        "SECRET_KEY": "x" * 60 + "unique-enough-0123456789",
        "KOOTABASE_VAR_DIR": str(tmp_path),
        # The MySQL driver may not be installed here; the topology test runs on MariaDB.
        "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--tag", "security", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
