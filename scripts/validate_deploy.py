"""Check deploy/ and docker-compose.yml offline (no Docker engine, no cluster needed).

* docker-compose.yml against the Compose Specification JSON schema (the copy
  shipped in compose-go, fetched from the Go module proxy), plus: every
  ``service_healthy`` dependency has a healthcheck, every image is pinned;
* deploy/prometheus: ``promtool check config`` and ``promtool check rules``;
* deploy/grafana: the dashboard parses, uses the provisioned data source, and
  every PromQL expression in it parses (``promtool check rules``);
* deploy/k8s: ``kustomize build``, then every object against the Kubernetes
  OpenAPI schemas (kubernetes-validate, strict) and KEDA objects against the
  CRD schemas shipped in KEDA's Go module; termination grace periods exceed the
  services' drain settings;
* deploy/rabbitmq/definitions.json is what scripts/rabbitmq_definitions.py writes.

    uv run python scripts/validate_deploy.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE_GO = "github.com/compose-spec/compose-go/v2@v2.16.2"
KEDA = "github.com/kedacore/keda/v2@v2.21.0"
KUSTOMIZE = "sigs.k8s.io/kustomize/kustomize/v5@v5.7.1"
K8S_VERSION = "1.33.0"
TOOLS = ROOT / ".infra" / "bin"

failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def go_module_dir(module: str) -> Path:
    out = subprocess.run(
        ["go", "mod", "download", "-json", module],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"},
    )
    return Path(json.loads(out.stdout)["Dir"])


def kustomize() -> str:
    binary = TOOLS / "kustomize"
    if not binary.exists():
        print(f"building {KUSTOMIZE} (once)")
        subprocess.run(
            ["go", "install", KUSTOMIZE],
            check=True,
            env=os.environ | {"GOBIN": str(TOOLS), "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"},
        )
    return str(binary)


def compose() -> None:
    spec = json.loads((go_module_dir(COMPOSE_GO) / "schema" / "compose-spec.json").read_text())
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    errors = sorted(jsonschema.Draft202012Validator(spec).iter_errors(doc), key=str)
    for e in errors:
        print(f"     {'/'.join(map(str, e.absolute_path))}: {e.message}")
    check(not errors, "docker-compose.yml matches the Compose Specification schema")
    services: dict[str, Any] = doc["services"]
    for name, svc in services.items():
        image = svc.get("image", "")
        check(
            bool(image) and ":" in image and not image.endswith(":latest"),
            f"compose {name}: image {image!r} is pinned",
        )
        for dep, how in (svc.get("depends_on") or {}).items():
            if how.get("condition") == "service_healthy":
                hc = services[dep].get("healthcheck", {})
                check(
                    bool(hc) and not hc.get("disable"),
                    f"compose {name}: depends on {dep} being healthy, and {dep} has a healthcheck",
                )


def promtool(*args: str) -> bool:
    result = subprocess.run(["promtool", *args], check=False, capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout + result.stderr)
    return result.returncode == 0


def prometheus() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
        shutil.copy(DEPLOY / "prometheus" / "alerts.yml", Path(tmp) / "alerts.yml")
        # The compose mount path, made relative so promtool finds the file here.
        (Path(tmp) / "prometheus.yml").write_text(
            config.replace("/etc/prometheus/alerts.yml", "alerts.yml")
        )
        check(promtool("check", "config", str(Path(tmp) / "prometheus.yml")), "promtool config")
    check(promtool("check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")), "promtool rules")


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def grafana() -> None:
    source = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uid = source["datasources"][0]["uid"]
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        exprs = []
        for panel in panels(dashboard["panels"]):
            if panel["type"] == "row":
                continue
            check(panel["datasource"]["uid"] == uid, f"{path.name}: {panel['title']!r} data source")
            exprs += [t["expr"] for t in panel["targets"]]
        check(bool(exprs), f"{path.name}: has queries")
        rules = {
            "groups": [
                {
                    "name": "dashboard",
                    "rules": [
                        {"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(exprs)
                    ],
                }
            ]
        }
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
            yaml.safe_dump(rules, f)
            f.flush()
            check(
                promtool("check", "rules", f.name),
                f"{path.name}: {len(exprs)} PromQL queries parse",
            )


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in (go_module_dir(KEDA) / "config" / "crd" / "bases").glob("keda.sh_*.yaml"):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            found[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return found


def kubernetes() -> None:
    built = subprocess.run(
        [kustomize(), "build", str(DEPLOY / "k8s" / "base")],
        check=False,
        capture_output=True,
        text=True,
    )
    check(built.returncode == 0, "kustomize build deploy/k8s/base")
    if built.returncode != 0:
        print(built.stderr)
        return
    docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    crds = crd_schemas()
    settings: dict[str, str] = {}
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        key = (doc["apiVersion"], doc["kind"])
        if key in crds:
            errors = list(jsonschema.Draft7Validator(crds[key]).iter_errors(doc))
            for e in errors:
                print(f"     {'/'.join(map(str, e.absolute_path))}: {e.message}")
            check(not errors, f"{name} matches KEDA's CRD schema ({KEDA})")
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            check(True, f"{name} matches the Kubernetes {K8S_VERSION} schema (strict)")
        except kubernetes_validate.ValidationError as exc:
            check(False, f"{name}: {exc.message} at {'/'.join(map(str, exc.path))}")
        if doc["kind"] == "ConfigMap":
            settings |= doc["data"]
    drains = {
        "worker": float(settings["CONVEYOR_WORKER_SHUTDOWN_GRACE_S"]),
        "notifier": float(settings["CONVEYOR_NOTIFY_SHUTDOWN_GRACE_S"]),
    }
    for doc in docs:
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] in drains:
            grace = doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            drain = drains[doc["metadata"]["name"]]
            check(grace > drain, f"{doc['metadata']['name']}: grace {grace} s > drain {drain} s")
    kinds = {d["kind"] for d in docs}
    for wanted in ("Deployment", "Service", "PodDisruptionBudget", "ScaledObject"):
        check(wanted in kinds, f"kustomize output has a {wanted}")


def rabbitmq() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "rabbitmq_definitions.py"), "--check"],
        check=False,
    )
    check(result.returncode == 0, "deploy/rabbitmq/definitions.json is up to date")


def main() -> int:
    for step in (compose, prometheus, grafana, kubernetes, rabbitmq):
        print(f"== {step.__name__}")
        step()
    if failures:
        print(f"\n{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print("\nall deploy checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
