"""Offline validation of manifests/ with the real validators (run by integration/tests/kubernetes.rs).

1. Kubernetes: `kubectl kustomize` renders every kustomization under manifests/kubernetes, and every
   rendered resource passes `kubernetes-validate --strict` (Kubernetes' own schemas, unknown fields
   refused).
2. Istio: every resource in manifests/istio passes the openAPIV3Schema of its CRD in
   ../shared/schemas/istio-crds.gen.yaml made strict (additionalProperties: false wherever the schema
   lists properties, except under x-kubernetes-preserve-unknown-fields), with check-jsonschema, and
   every x-kubernetes-validations CEL rule on the way, with cel-python.
3. Deliberately broken copies are refused by the same checks: a validator that accepts everything
   would pass step 1 and 2.

Exit status 0 when all of it holds; each failure is printed with the file and the reason.
"""

import copy
import json
import pathlib
import subprocess
import sys
import tempfile
from urllib.parse import urlsplit

import celpy
import celpy.celtypes as ct
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv" / "bin"
CRDS = ROOT.parent / "shared" / "schemas" / "istio-crds.gen.yaml"
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL", msg)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# ---- Kubernetes -------------------------------------------------------------------------------------

def kustomize(directory):
    out = run([str(VENV / "kubectl"), "kustomize", str(directory)])
    if out.returncode != 0:
        fail(f"kubectl kustomize {directory}: {out.stderr.strip()}")
        return None
    return out.stdout


def kubernetes_validate(text, label):
    """True when kubernetes-validate --strict accepts every resource of `text`."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    out = run([str(VENV / "kubernetes-validate"), "--strict", "--quiet", f.name])
    pathlib.Path(f.name).unlink()
    if out.returncode != 0:
        return False, (out.stdout + out.stderr).replace(f.name, label).strip()
    return True, ""


def check_kubernetes():
    kustomizations = sorted((ROOT / "manifests" / "kubernetes").rglob("kustomization.yaml"))
    assert kustomizations, "no kustomization found"
    rendered_all = []
    for k in kustomizations:
        d = k.parent
        rendered = kustomize(d)
        if rendered is None:
            continue
        docs = [x for x in yaml.safe_load_all(rendered) if x]
        ok, why = kubernetes_validate(rendered, f"kustomize {d.relative_to(ROOT)}")
        if not ok:
            fail(f"{d.relative_to(ROOT)}: {why}")
        else:
            kinds = ", ".join(sorted(f"{x['kind']}/{x['metadata']['name']}" for x in docs))
            print(f"ok   kubectl kustomize {d.relative_to(ROOT)} + kubernetes-validate --strict: {kinds}")
        rendered_all.extend(docs)

    # The contract of issue 9, checked on what kustomize renders.
    by = {(x["kind"], x["metadata"]["name"]): x for x in rendered_all}
    dep = by.get(("Deployment", "fledge"))
    if dep is None:
        fail("no Deployment fledge rendered")
        return rendered_all
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    expect = {
        "namespace fledge-system": dep["metadata"].get("namespace") == "fledge-system",
        "one replica": spec.get("replicas") == 1,
        "Recreate": spec.get("strategy", {}).get("type") == "Recreate",
        "runAsNonRoot": pod["securityContext"].get("runAsNonRoot") is True,
        "seccomp RuntimeDefault": pod["securityContext"].get("seccompProfile", {}).get("type") == "RuntimeDefault",
        "readOnlyRootFilesystem": c["securityContext"].get("readOnlyRootFilesystem") is True,
        "no privilege escalation": c["securityContext"].get("allowPrivilegeEscalation") is False,
        "drop ALL capabilities": c["securityContext"].get("capabilities", {}).get("drop") == ["ALL"],
        "liveness /healthz": c["livenessProbe"]["httpGet"]["path"] == "/healthz",
        "readiness /readyz": c["readinessProbe"]["httpGet"]["path"] == "/readyz",
        "resources": bool(c.get("resources", {}).get("requests")) and bool(c["resources"].get("limits")),
        "SQLite on the PVC": any(v.get("persistentVolumeClaim", {}).get("claimName") == "fledge-data" for v in pod["volumes"]),
        "token from a Secret": any(e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "fledge-token" for e in c.get("env", [])),
        "Service fledge port 7070": any(p["port"] == 7070 for p in by.get(("Service", "fledge"), {}).get("spec", {}).get("ports", [])),
        "PodDisruptionBudget": ("PodDisruptionBudget", "fledge") in by,
        "NetworkPolicy": ("NetworkPolicy", "fledge") in by,
        "no Secret committed": not any(k == "Secret" for k, _ in by),
        "support-agent v1, v2 and one Service": all(
            by.get(("Deployment", f"support-agent-{v}"), {}).get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {}).get("version") == v
            for v in ("v1", "v2")) and ("Service", "support-agent") in by,
    }
    for what, ok in expect.items():
        if not ok:
            fail(f"manifests/kubernetes: {what}")
    print(f"ok   manifests/kubernetes has: {', '.join(k for k, v in expect.items() if v)}")

    # Broken copies: strict validation must refuse a typo and a wrong type.
    broken_typo = copy.deepcopy(dep)
    broken_typo["spec"]["replica"] = broken_typo["spec"].pop("replicas")
    broken_type = copy.deepcopy(dep)
    broken_type["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = "yes"
    for label, doc in [("Deployment with `replica`", broken_typo), ("securityContext.runAsNonRoot: \"yes\"", broken_type)]:
        ok, why = kubernetes_validate(yaml.safe_dump(doc), label)
        if ok:
            fail(f"kubernetes-validate --strict accepted a broken copy: {label}")
        else:
            print(f"ok   refused by kubernetes-validate --strict: {label}: {why.splitlines()[-1][:160]}")
    return rendered_all


# ---- Istio ------------------------------------------------------------------------------------------

def strict(schema):
    """The schema with additionalProperties: false wherever properties are listed (what the API server
    does with unknown fields of a structural schema), except under x-kubernetes-preserve-unknown-fields."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def load_crds():
    crds = {}
    for d in yaml.safe_load_all(CRDS.read_text()):
        if not d:
            continue
        group, kind = d["spec"]["group"], d["spec"]["names"]["kind"]
        for v in d["spec"]["versions"]:
            schema = copy.deepcopy(v["schema"]["openAPIV3Schema"])
            # The API server adds these to every CRD's schema; the CRD itself lists only spec and status.
            schema.setdefault("properties", {}).update(
                apiVersion={"type": "string", "enum": [f"{group}/{v['name']}"]},
                kind={"type": "string", "enum": [kind]},
                metadata={"type": "object", "required": ["name"]},
            )
            crds[(f"{group}/{v['name']}", kind)] = schema
    return crds


# Kubernetes' CEL library functions that Istio's rules use, on top of standard CEL.
def _is_url(s):
    try:
        u = urlsplit(str(s))
        return ct.BoolType(bool(u.scheme) and (bool(u.netloc) or bool(u.path)))
    except ValueError:
        return ct.BoolType(False)


CEL_FUNCTIONS = {
    "isURL": _is_url,
    "url": lambda s: ct.StringType(str(s)),
    "getScheme": lambda u: ct.StringType(urlsplit(str(u)).scheme),
}
CEL = celpy.Environment()
_programs = {}


def cel_errors(schema, value, path="spec"):
    """Every x-kubernetes-validations rule on `value`'s way through `schema` that does not hold."""
    errors = []
    if not isinstance(schema, dict):
        return errors
    for rule in schema.get("x-kubernetes-validations", []):
        prg = _programs.get(rule["rule"])
        if prg is None:
            prg = _programs[rule["rule"]] = CEL.program(CEL.compile(rule["rule"]), functions=CEL_FUNCTIONS)
        result = prg.evaluate({"self": celpy.json_to_cel(value)})
        if result is not True and not (isinstance(result, ct.BoolType) and bool(result)):
            errors.append(f"{path}: {rule.get('message', rule['rule'])} ({result!r})")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for k, v in value.items():
            if k in props:
                errors += cel_errors(props[k], v, f"{path}.{k}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += cel_errors(schema["additionalProperties"], v, f"{path}.{k}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            errors += cel_errors(schema["items"], v, f"{path}[{i}]")
    return errors


def istio_errors(doc, crds, tmp):
    """Why `doc` is refused: by check-jsonschema against the strict CRD schema, or by a CEL rule."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    schema = crds.get(key)
    if schema is None:
        return [f"no CRD for {key}"]
    name = f"{doc['kind']}-{doc['metadata']['name']}"
    schema_file = tmp / f"{name}.schema.json"
    doc_file = tmp / f"{name}.json"
    schema_file.write_text(json.dumps(strict(schema)))
    doc_file.write_text(json.dumps(doc))
    out = run([str(VENV / "check-jsonschema"), "--schemafile", str(schema_file), str(doc_file)])
    errors = []
    if out.returncode != 0:
        errors.append("check-jsonschema: " + " ".join((out.stdout + out.stderr).split())[:400])
    errors += cel_errors(schema["properties"]["spec"], doc.get("spec", {}))
    return errors


def check_istio():
    crds = load_crds()
    files = sorted((ROOT / "manifests" / "istio").glob("*.yaml"))
    resources = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = pathlib.Path(t)
        for f in files:
            for doc in yaml.safe_load_all(f.read_text()):
                if not doc or "apiVersion" not in doc:
                    continue  # mesh-config.yaml: Helm values, not a resource
                errors = istio_errors(doc, crds, tmp)
                label = f"{f.relative_to(ROOT)}: {doc['kind']}/{doc['metadata']['name']}"
                if errors:
                    fail(f"{label}: {errors}")
                else:
                    print(f"ok   {label}: strict CRD schema (check-jsonschema) and CEL rules")
                resources[(f.name, doc["kind"], doc["metadata"]["name"])] = doc

        wasm = resources[("wasmplugin.yaml", "WasmPlugin", "fledge")]
        te = resources[("trafficextension.yaml", "TrafficExtension", "fledge")]

        def broken(base, change):
            d = copy.deepcopy(base)
            change(d["spec"])
            return d

        target = [{"kind": "Service", "name": "support-agent"}]
        # (what, broken copy, a words of the reason it must be refused for)
        cases = [
            ("WasmPlugin with a typo (pluginNmae)", broken(wasm, lambda s: s.update(pluginNmae=s.pop("pluginName"))), "'pluginNmae' was unexpected"),
            ("WasmPlugin with phase AUTHORIZATION", broken(wasm, lambda s: s.update(phase="AUTHORIZATION")), "'AUTHORIZATION' is not one of"),
            ("WasmPlugin with selector and targetRefs", broken(wasm, lambda s: s.update(targetRefs=target)), "only one of targetRefs or selector"),
            ("WasmPlugin with a bad sha256", broken(wasm, lambda s: s.update(sha256="not-a-sha256")), "'not-a-sha256' does not match"),
            ("WasmPlugin with url scheme ftp", broken(wasm, lambda s: s.update(url="ftp://fledge.fledge-system/filter.wasm")), "url must have schema"),
            ("WasmPlugin with a wildcard selector key", broken(wasm, lambda s: s.update(selector={"matchLabels": {"fledge.dev/*": "x"}})), "wildcard not allowed"),
            ("TrafficExtension with a typo (wasm.failStrategyy)", broken(te, lambda s: s["wasm"].update(failStrategyy="FAIL_OPEN")), "'failStrategyy' was unexpected"),
            ("TrafficExtension with phase STAT", broken(te, lambda s: s.update(phase="STAT")), "'STAT' is not one of"),
            ("TrafficExtension with selector and targetRefs", broken(te, lambda s: s.update(targetRefs=target)), "only one of targetRefs or selector"),
            ("TrafficExtension with a bad sha256", broken(te, lambda s: s["wasm"].update(sha256="ABC")), "'ABC' does not match"),
            ("TrafficExtension with wasm and lua", broken(te, lambda s: s.update(lua={"inlineCode": "x"})), "exactly one of wasm or lua"),
        ]
        for label, doc, reason in cases:
            errors = istio_errors(doc, crds, tmp)
            hit = [e for e in errors if reason in e]
            if hit:
                print(f"ok   refused: {label}: ...{reason}...")
            else:
                fail(f"not refused for {reason!r}: {label}: {errors}")
    return resources


if __name__ == "__main__":
    check_kubernetes()
    check_istio()
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all manifest checks passed")
