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
4. The replicated variant (manifests/kubernetes/ha) is checked on what kustomize renders: three replicas
   rolled one at a time, no PersistentVolumeClaim, FLEDGE_DATABASE from a Secret that is not optional,
   FLEDGE_REPLICA_ID from the pod name, a PodDisruptionBudget that lets exactly one pod go, anti-affinity,
   a zone spread, egress to PostgreSQL, and the base's security settings. Broken overlays of it (valid
   Kubernetes, which kubernetes-validate accepts) are refused by those checks, each for its own reason.

Exit status 0 when all of it holds; each failure is printed with the file and the reason.
"""

import copy
import json
import math
import os
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
KUBE = ROOT / "manifests" / "kubernetes"
HA = KUBE / "ha"
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
    kustomizations = sorted(KUBE.rglob("kustomization.yaml"))
    assert kustomizations, "no kustomization found"
    renders = {}  # kustomization directory -> rendered resources
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
        renders[d] = docs

    # The contract of issue 9, checked on what kustomize renders: the single-replica controller (base, and
    # manifests/kubernetes, which applies it) and the example. The replicated variant has its own contract
    # (check_ha); it renders the same names, so it is kept out of this map.
    rendered_all = [x for d, docs in renders.items() if d != HA for x in docs]
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
        "no Secret committed": not any(x["kind"] == "Secret" for docs in renders.values() for x in docs),
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

    if HA in renders and KUBE / "base" in renders:
        check_ha(renders[HA], renders[KUBE / "base"])
    else:
        fail(f"{HA.relative_to(ROOT)} or its base did not render")
    return rendered_all


# ---- Kubernetes: the replicated variant -------------------------------------------------------------

def _matches(selector, labels):
    """True when a selector with matchLabels only selects a pod with `labels`."""
    return bool(selector) and set(selector) == {"matchLabels"} and selector["matchLabels"].items() <= labels.items()


def pdb_allows(pdb, replicas):
    """How many of `replicas` healthy pods the budget lets a drain evict at once (percentages round up,
    as the disruption controller does)."""
    s = pdb.get("spec", {})

    def count(v):
        return math.ceil(int(v[:-1]) * replicas / 100) if isinstance(v, str) and v.endswith("%") else int(v)

    if "minAvailable" in s:
        return max(0, replicas - count(s["minAvailable"]))
    if "maxUnavailable" in s:
        return min(replicas, count(s["maxUnavailable"]))
    return replicas


def _allows_tcp_port(rule, port):
    ports = rule.get("ports")
    if not ports:  # no ports: every port
        return True
    return any(p.get("protocol", "TCP") == "TCP" and (p.get("port") is None or p["port"] == port
               or (isinstance(p["port"], int) and p["port"] <= port <= p.get("endPort", p["port"])))
               for p in ports)


def ha_checks(docs, base_docs):
    """[(what, None when it holds, else why not)] for a rendering of the HA overlay; `base_docs` is the
    rendered base, whose security settings it must keep."""
    checks = []

    def need(what, problem):
        checks.append((what, problem))

    by = {(x["kind"], x["metadata"]["name"]): x for x in docs}
    base = {(x["kind"], x["metadata"]["name"]): x for x in base_docs}
    dep, base_dep = by.get(("Deployment", "fledge")), base[("Deployment", "fledge")]
    if dep is None:
        need("Deployment fledge", "no Deployment fledge rendered")
        return checks
    spec = dep["spec"]
    tmpl, base_tmpl = spec["template"], base_dep["spec"]["template"]
    pod, base_pod = tmpl["spec"], base_tmpl["spec"]
    labels = tmpl["metadata"].get("labels", {})
    c = next((x for x in pod["containers"] if x["name"] == "fledge"), {})
    base_c = next(x for x in base_pod["containers"] if x["name"] == "fledge")
    replicas = spec.get("replicas", 1)
    need("3 replicas", None if replicas == 3 else f"Deployment fledge has {replicas} replica(s), not 3")

    strategy = spec.get("strategy", {})
    ru = strategy.get("rollingUpdate", {})
    need("RollingUpdate one at a time",
         None if strategy.get("type", "RollingUpdate") == "RollingUpdate" and ru.get("maxUnavailable") == 1 and ru.get("maxSurge") in (0, 1)
         else f"strategy {strategy} is not RollingUpdate with maxUnavailable 1 and maxSurge 0 or 1")

    # No state on a volume: a ReadWriteOnce claim attaches to one node, and the replicas that the
    # anti-affinity puts on the others would never start.
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes", []) if "persistentVolumeClaim" in v}
    pvc_problems = []
    pvcs = [x for x in docs if x["kind"] == "PersistentVolumeClaim"]
    for p in pvcs:
        name = p["metadata"]["name"]
        once = sorted({"ReadWriteOnce", "ReadWriteOncePod"} & set(p.get("spec", {}).get("accessModes", [])))
        if once and replicas > 1 and name in claims:
            pvc_problems.append(f"PersistentVolumeClaim {name} is {'/'.join(once)} and mounted by {replicas} replicas: "
                                "it attaches to one node, and the replicas on the others never start")
        else:
            pvc_problems.append(f"PersistentVolumeClaim {name} is rendered: the replicated controller keeps its state in PostgreSQL")
    for claim in sorted(claims - {p["metadata"]["name"] for p in pvcs}):
        pvc_problems.append(f"the pod mounts PersistentVolumeClaim {claim}")
    need("no PersistentVolumeClaim", "; ".join(pvc_problems) or None)
    args = c.get("args", [])
    why_not = {
        "--data": "the SQLite directory, which the replicated controller has none of",
        "--database": "a URL here would put the password in the pod spec: FLEDGE_DATABASE from the Secret instead",
        "--replica-id": "it would be the same for every replica: FLEDGE_REPLICA_ID from the pod name instead",
    }
    flags = [f"argument {a.split('=')[0]}: {why_not[a.split('=')[0]]}" for a in args if a.split("=")[0] in why_not]
    need("no --data, --database or --replica-id argument", "; ".join(flags) or None)

    env = {e["name"]: e for e in c.get("env", [])}
    db = env.get("FLEDGE_DATABASE")
    ref = (db or {}).get("valueFrom", {}).get("secretKeyRef") or {}
    if db is None:
        problem = "FLEDGE_DATABASE is not set"
    elif "value" in db:
        problem = "FLEDGE_DATABASE is a literal value: the URL holds a password, take it from the Secret fledge-database (key url)"
    elif (ref.get("name"), ref.get("key")) != ("fledge-database", "url"):
        problem = f"FLEDGE_DATABASE comes from {db.get('valueFrom')}, not from the Secret fledge-database, key url"
    elif ref.get("optional", False) is not False:
        problem = ("FLEDGE_DATABASE's secretKeyRef is optional: without the Secret a replica would start without it "
                   "(and try SQLite) instead of waiting for the Secret")
    else:
        problem = None
    need("FLEDGE_DATABASE from Secret fledge-database, not optional", problem)
    rid = env.get("FLEDGE_REPLICA_ID") or {}
    need("FLEDGE_REPLICA_ID from the pod name",
         None if "value" not in rid and rid.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name"
         else f"FLEDGE_REPLICA_ID is not the pod name from the downward API (fieldRef metadata.name): {rid or 'not set'}")

    pdbs = [x for x in docs if x["kind"] == "PodDisruptionBudget" and _matches(x["spec"].get("selector"), labels)]
    allows = [pdb_allows(x, replicas) for x in pdbs]
    need("PodDisruptionBudget lets exactly one pod go",
         None if allows == [1] else
         f"the PodDisruptionBudget(s) of the fledge pods let {allows} of {replicas} pods go at a time, not exactly one" if pdbs
         else "no PodDisruptionBudget selects the fledge pods")

    anti = pod.get("affinity", {}).get("podAntiAffinity", {})
    terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution", []) + [
        t.get("podAffinityTerm", {}) for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])]
    need("podAntiAffinity on kubernetes.io/hostname",
         None if any(t.get("topologyKey") == "kubernetes.io/hostname" and _matches(t.get("labelSelector"), labels) for t in terms)
         else "no podAntiAffinity on kubernetes.io/hostname selects the fledge pods: all replicas may land on one node")
    need("zone spread, ScheduleAnyway",
         None if any(t.get("topologyKey") == "topology.kubernetes.io/zone" and t.get("whenUnsatisfiable") == "ScheduleAnyway"
                     and _matches(t.get("labelSelector"), labels) for t in pod.get("topologySpreadConstraints", []))
         else "no topologySpreadConstraint on topology.kubernetes.io/zone (ScheduleAnyway) selects the fledge pods")

    # Everything the base secures stays as it is.
    kept = {
        "pod securityContext": (pod.get("securityContext"), base_pod.get("securityContext")),
        "container securityContext": (c.get("securityContext"), base_c.get("securityContext")),
        "automountServiceAccountToken": (pod.get("automountServiceAccountToken"), base_pod.get("automountServiceAccountToken")),
        "serviceAccountName": (pod.get("serviceAccountName"), base_pod.get("serviceAccountName")),
        "template metadata": (tmpl["metadata"], base_tmpl["metadata"]),
        "image": (c.get("image"), base_c.get("image")),
        "ports": (c.get("ports"), base_c.get("ports")),
        "livenessProbe": (c.get("livenessProbe"), base_c.get("livenessProbe")),
        "readinessProbe": (c.get("readinessProbe"), base_c.get("readinessProbe")),
        "resources": (c.get("resources"), base_c.get("resources")),
        "FLEDGE_TOKEN": (env.get("FLEDGE_TOKEN"), next(e for e in base_c["env"] if e["name"] == "FLEDGE_TOKEN")),
        "FLEDGE_WEBHOOK_SECRET": (env.get("FLEDGE_WEBHOOK_SECRET"), next(e for e in base_c["env"] if e["name"] == "FLEDGE_WEBHOOK_SECRET")),
        "rollouts volume": ([v for v in pod.get("volumes", []) if v["name"] == "rollouts"], [v for v in base_pod["volumes"] if v["name"] == "rollouts"]),
        "rollouts mount": ([m for m in c.get("volumeMounts", []) if m["name"] == "rollouts"], [m for m in base_c["volumeMounts"] if m["name"] == "rollouts"]),
    }
    for kind, name in [("Namespace", "fledge-system"), ("ServiceAccount", "fledge"), ("Service", "fledge"), ("ConfigMap", "fledge-rollouts")]:
        kept[f"{kind}/{name}"] = (by.get((kind, name)), base[(kind, name)])
    np, base_np = by.get(("NetworkPolicy", "fledge"), {}).get("spec", {}), base[("NetworkPolicy", "fledge")]["spec"]
    for field in ("podSelector", "policyTypes", "ingress"):
        kept[f"NetworkPolicy {field}"] = (np.get(field), base_np.get(field))
    if "--rollouts-dir=/etc/fledge/rollouts" not in args:
        kept["--rollouts-dir"] = (args, base_c["args"])
    changed = [f"{what}: {ours!r} instead of the base's {theirs!r}" for what, (ours, theirs) in kept.items() if ours != theirs]
    need("the base's security settings, probes, Service and ingress", "; ".join(changed)[:600] or None)

    need("egress to PostgreSQL (TCP 5432)",
         None if _matches(np.get("podSelector"), labels) and any(_allows_tcp_port(r, 5432) for r in np.get("egress", []))
         else f"NetworkPolicy fledge allows no egress to PostgreSQL on TCP 5432: egress {np.get('egress')}")
    need("no Secret committed", "a Secret is rendered" if any(x["kind"] == "Secret" for x in docs) else None)
    return checks


def dep_patch(container=None, pod=None, spec=None):
    """A strategic merge patch of Deployment fledge."""
    p = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "fledge"}, "spec": dict(spec or {})}
    if container or pod:
        t = p["spec"].setdefault("template", {}).setdefault("spec", {})
        t.update(pod or {})
        if container:
            t["containers"] = [{"name": "fledge", **container}]
    return p


def pdb_patch(spec):
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "fledge"}, "spec": spec}


def check_ha(docs, base_docs):
    label = HA.relative_to(ROOT)
    checks = ha_checks(docs, base_docs)
    for what, problem in checks:
        if problem:
            fail(f"{label}: {problem}")
    print(f"ok   {label} has: {', '.join(what for what, problem in checks if not problem)}")

    # Broken overlays of the HA variant, each one mistake on top of manifests/kubernetes/ha, rendered by
    # kustomize. Each is valid Kubernetes (kubernetes-validate --strict accepts it), so only the checks above
    # can refuse it, and each must be refused for its own reason. (what, patches, extra files, reason)
    pvc = (KUBE / "base" / "pvc.yaml").read_text()
    cases = [
        ("an overlay that keeps the base's ReadWriteOnce PVC with 3 replicas",
         [dep_patch(container={"volumeMounts": [{"name": "data", "mountPath": "/var/lib/fledge"}]},
                    pod={"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "fledge-data"}}]})],
         {"pvc.yaml": pvc}, "is ReadWriteOnce and mounted by 3 replicas"),
        ("FLEDGE_DATABASE as a literal value",
         [dep_patch(container={"env": [{"name": "FLEDGE_DATABASE", "value": "postgres://fledge:hunter2@postgres:5432/fledge", "valueFrom": None}]})],
         {}, "FLEDGE_DATABASE is a literal value"),
        ("FLEDGE_DATABASE from an optional secretKeyRef",
         [dep_patch(container={"env": [{"name": "FLEDGE_DATABASE", "valueFrom": {"secretKeyRef": {"name": "fledge-database", "key": "url", "optional": True}}}]})],
         {}, "secretKeyRef is optional"),
        ("the database URL as a --database argument",
         [dep_patch(container={"args": ["serve", "--listen=0.0.0.0:7070", "--rollouts-dir=/etc/fledge/rollouts", "--database=postgres://fledge:hunter2@postgres/fledge"]})],
         {}, "argument --database: a URL here would put the password in the pod spec"),
        ("FLEDGE_REPLICA_ID the same literal for every replica",
         [dep_patch(container={"env": [{"name": "FLEDGE_REPLICA_ID", "value": "fledge-0", "valueFrom": None}]})],
         {}, "FLEDGE_REPLICA_ID is not the pod name"),
        ("the base's PodDisruptionBudget (maxUnavailable: 0)",
         [pdb_patch({"minAvailable": None, "maxUnavailable": 0})], {}, "let [0] of 3 pods go"),
        ("a PodDisruptionBudget with minAvailable: 1",
         [pdb_patch({"minAvailable": 1})], {}, "let [2] of 3 pods go"),
        ("no podAntiAffinity",
         [dep_patch(pod={"affinity": None})], {}, "no podAntiAffinity on kubernetes.io/hostname"),
        ("a writable root filesystem",
         [dep_patch(container={"securityContext": {"readOnlyRootFilesystem": False}})], {}, "container securityContext: {"),
        ("the base's NetworkPolicy without egress",
         [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "fledge"}, "spec": {"egress": []}}],
         {}, "allows no egress to PostgreSQL"),
        ("a Recreate strategy",
         [dep_patch(spec={"strategy": {"type": "Recreate", "rollingUpdate": None}})], {}, "is not RollingUpdate"),
    ]
    with tempfile.TemporaryDirectory() as t:
        for i, (what, patches, files, reason) in enumerate(cases):
            d = pathlib.Path(t) / f"broken-{i}"
            d.mkdir()
            for name, text in files.items():
                (d / name).write_text(text)
            (d / "kustomization.yaml").write_text(yaml.safe_dump({
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(HA, d), *files],
                "patches": [{"patch": yaml.safe_dump(p)} for p in patches],
            }))
            rendered = kustomize(d)
            if rendered is None:
                continue
            ok, why = kubernetes_validate(rendered, what)
            if not ok:
                fail(f"broken overlay of {label} is not valid Kubernetes, so it does not test the checks: {what}: {why[:300]}")
                continue
            problems = [p for _, p in ha_checks([x for x in yaml.safe_load_all(rendered) if x], base_docs) if p]
            hit = [p for p in problems if reason in p]
            if hit:
                print(f"ok   refused: {label} with {what}: {hit[0][:200]}")
            else:
                fail(f"not refused for {reason!r}: {label} with {what}: {problems}")


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
