#!/usr/bin/env bash
# Validates Flotilla's Kubernetes manifests (cluster-config/kubernetes/) without a cluster:
#   1. every manifest against the Kubernetes API schemas of the oldest and the newest version
#      kubernetes-validate carries, strictly: an unknown field, a wrong type, a missing required
#      field or a kind without a schema fails;
#   2. what the schemas cannot see: the ConfigMap's cluster.json is JSON whose founding members are
#      the StatefulSet's first pods by the headless Service's names, and the names that tie the
#      objects together agree (service, config map, claim, labels, the budget keeps a majority);
#   3. the check itself: broken copies of the manifests must each fail, with the expected reason.
#
#   validate-kubernetes.sh            run by `make test`
#
# kubernetes-validate comes from PyPI: FLOTILLA_KUBERNETES_DEPS=1 scripts/install-deps.sh.
set -euo pipefail

cd "$(dirname "$0")/.."
manifests=cluster-config/kubernetes
# The same path as scripts/install-deps.sh's.
tools=${FLOTILLA_TOOLS_DIR:-${HOME:-/root}/.local/share/flotilla}/kubernetes-validate-1.37.0
validator=$tools/bin/kubernetes-validate
python=$tools/bin/python
versions=(${FLOTILLA_KUBERNETES_VERSIONS:-1.25.0 1.37.0})
[ -x "$validator" ] || {
  echo "validate-kubernetes: $validator is missing; run FLOTILLA_KUBERNETES_DEPS=1 scripts/install-deps.sh" >&2
  exit 1
}

# Validates FILE against every version; prints the validator's complaints and fails on any error or
# warning (it only warns about a kind it has no schema for), or when FILE holds no resource at all.
validate() {
  local file=$1 version output resources
  for version in "${versions[@]}"; do
    if ! output=$("$validator" --strict --kubernetes-version "$version" "$file" 2>&1); then
      echo "$output"
      return 1
    fi
    if grep -q "^WARN" <<<"$output"; then
      echo "$output"
      return 1
    fi
    resources=$(grep -c "passed for resource" <<<"$output" || true)
    if [ "$resources" -eq 0 ]; then
      echo "$file: no Kubernetes resource in it"
      return 1
    fi
  done
}

# What ties the manifests together, which no schema checks. Prints what is wrong and fails.
check_consistency() {
  "$python" - "$1" <<'PYTHON'
import json, sys, pathlib, yaml

directory = pathlib.Path(sys.argv[1])
objects = {}
for path in sorted(directory.glob("*.yaml")):
    try:
        documents = list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as error:
        print(f"{path} is not YAML: {error}")
        sys.exit(1)
    for document in documents:
        if document:
            objects[(document["kind"], document["metadata"]["name"])] = document
problems = []
def need(condition, problem):
    if not condition:
        problems.append(problem)

sets = [o for (kind, _), o in objects.items() if kind == "StatefulSet"]
if len(sets) != 1:
    print(f"expected one StatefulSet, found {len(sets)}")
    sys.exit(1)
statefulset = sets[0]
name = statefulset["metadata"]["name"]
spec = statefulset["spec"]
pod = spec["template"]["spec"]
labels = spec["template"]["metadata"]["labels"]
need(spec["selector"]["matchLabels"].items() <= labels.items(), "the StatefulSet's selector does not match its pods' labels")
need(spec.get("podManagementPolicy") == "Parallel",
     "podManagementPolicy must be Parallel: no pod is ready before a majority runs")

service = objects.get(("Service", spec.get("serviceName")))
need(service is not None, f"no Service named {spec.get('serviceName')} (the StatefulSet's serviceName)")
if service:
    need(service["spec"].get("clusterIP") == "None", f"Service {spec['serviceName']} must be headless (clusterIP: None)")
    need(service["spec"].get("publishNotReadyAddresses") is True,
         f"Service {spec['serviceName']} must publish not-ready addresses: pods find each other before they are ready")
    need(service["spec"]["selector"].items() <= labels.items(), "the headless Service does not select the pods")

volumes = {v["name"]: v for v in pod.get("volumes", [])}
config_volume = next((v for v in volumes.values() if "configMap" in v), None)
need(config_volume is not None, "no ConfigMap volume in the pods")
configmap = objects.get(("ConfigMap", config_volume["configMap"]["name"])) if config_volume else None
need(configmap is not None, "the ConfigMap the pods mount is not among the manifests")
for claim in (v["persistentVolumeClaim"]["claimName"] for v in volumes.values() if "persistentVolumeClaim" in v):
    shared = objects.get(("PersistentVolumeClaim", claim))
    need(shared is not None, f"no PersistentVolumeClaim {claim}")
    if shared:
        need(shared["spec"]["accessModes"] == ["ReadWriteMany"], f"claim {claim} must be ReadWriteMany: every pod mounts it")
need([t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])] == ["data"], "expected one claim template, data")

founders = 0
if configmap:
    try:
        cluster = json.loads(configmap["data"]["cluster.json"])
    except (KeyError, json.JSONDecodeError) as error:
        problems.append(f"the ConfigMap's cluster.json is not JSON: {error}")
        cluster = {"members": []}
    members = cluster.get("members", [])
    founders = len(members)
    for ordinal, member in enumerate(members):
        host = f"{name}-{ordinal}.{spec.get('serviceName')}"
        need(member.get("id") == f"n{ordinal + 1}", f"member {ordinal} must be n{ordinal + 1} (pod {name}-{ordinal})")
        for role in ("peer", "client"):
            need(str(member.get(role, "")).startswith(host + ":"),
                 f"member n{ordinal + 1}'s {role} address {member.get(role)} is not pod {name}-{ordinal}'s name {host}")
    need(founders == spec["replicas"], f"{founders} founding members but {spec['replicas']} replicas")

budgets = [o for (kind, _), o in objects.items() if kind == "PodDisruptionBudget"]
need(len(budgets) == 1, "expected one PodDisruptionBudget")
if budgets and founders:
    budget = budgets[0]["spec"]
    need(budget["selector"]["matchLabels"].items() <= labels.items(), "the PodDisruptionBudget does not select the pods")
    need(budget.get("minAvailable") == founders // 2 + 1,
         f"the PodDisruptionBudget must keep a majority of {founders} voters available: minAvailable {founders // 2 + 1}")

env = {e["name"] for c in pod["containers"] for e in c.get("env", [])}
need("FLOTILLA_NODE_ID_FROM_ORDINAL" in env, "the pods do not take their node id from their name")
for problem in problems:
    print(problem)
sys.exit(1 if problems else 0)
PYTHON
}

failed=0
for file in "$manifests"/*.yaml; do
  if ! output=$(validate "$file"); then
    echo "validate-kubernetes: $file does not validate:" >&2
    echo "$output" >&2
    failed=1
  fi
done
if ! output=$(check_consistency "$manifests" 2>&1); then
  echo "validate-kubernetes: the manifests do not fit together:" >&2
  echo "$output" >&2
  failed=1
fi
[ "$failed" = 0 ] || exit 1
echo "validate-kubernetes: $(ls "$manifests"/*.yaml | wc -l) manifests valid for Kubernetes ${versions[*]} (strict) and consistent"

# The self-check: each broken copy must fail, for the reason given. A mutation that no longer
# changes its file is an error too, so the check cannot quietly stop checking.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mutations=(
  # file | sed expression | what the failure must say
  "statefulset.yaml|s/podManagementPolicy:/podManagmentPolicy:/|'podManagmentPolicy' was unexpected"
  "statefulset.yaml|s/replicas: 3/replicas: three/|is not of type 'integer'"
  "statefulset.yaml|s/kind: StatefulSet/kind: StatefullSet/|Couldn't find schema for kind StatefullSet"
  "statefulset.yaml|/serviceName: flotilla/d|'serviceName' is a required property"
  "statefulset.yaml|s/podManagementPolicy: Parallel/podManagementPolicy: OrderedReady/|must be Parallel"
  "service.yaml|s/  clusterIP: None/  clusterIp: None/|'clusterIp' was unexpected"
  "pdb.yaml|s/minAvailable: 2/minAvailable: 1/|keep a majority of 3 voters"
  "configmap.yaml|s/flotilla-1.flotilla:7201/flotilla-1.flotila:7201/|is not pod flotilla-1's name"
  "configmap.yaml|s/\"tick-ms\": 50,/\"tick-ms\": 50/|cluster.json is not JSON"
  "shared-volume.yaml|s/storage: 20Gi/storage: [20Gi/|Couldn't parse YAML"
)
for mutation in "${mutations[@]}"; do
  IFS='|' read -r file expression expected <<<"$mutation"
  rm -rf "$work/copy"
  cp -r "$manifests" "$work/copy"
  sed -i "$expression" "$work/copy/$file"
  if cmp -s "$manifests/$file" "$work/copy/$file"; then
    echo "validate-kubernetes: self-check: '$expression' no longer changes $file; update the mutation" >&2
    exit 1
  fi
  output=""
  for copy in "$work"/copy/*.yaml; do
    output+=$(validate "$copy" || true)
  done
  output+=$(check_consistency "$work/copy" 2>&1 || true)
  if ! grep -qF "$expected" <<<"$output"; then
    echo "validate-kubernetes: self-check: $file with '$expression' should fail saying \"$expected\"; got:" >&2
    echo "${output:-(nothing: it passed)}" >&2
    exit 1
  fi
done
echo "validate-kubernetes: self-check: ${#mutations[@]} broken copies each failed for their reason"
