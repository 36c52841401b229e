#!/bin/sh
# Removes everything the original Bottlerocket update operator (v1.x,
# installed from its one-file manifest or its two Helm charts) put into a
# cluster, then checks that nothing of it remains. Run it before applying
# this operator's manifest (README: "Moving over from the original operator").
#
#   sh deploy/remove-original-operator.sh [NAMESPACE]    # default brupop-bottlerocket-aws
#
# It uses kubectl with your current context (KUBECONFIG and the like apply).
# What it deletes is named below, one kind at a time, so you can read it
# before you run it; it never deletes the namespace (this operator installs
# into it too) nor anything of this operator's own. Node labels stay: both
# operators manage the nodes labelled
# bottlerocket.aws/updater-interface-version=2.0.0.
#
# Exit status: 0 when nothing of the original remains, 1 when something
# does (listed), 2 on a usage or kubectl error.
set -eu

NS="${1:-brupop-bottlerocket-aws}"
CRD=bottlerocketshadows.brupop.bottlerocket.aws

say() { printf '%s\n' "$*"; }
k() { kubectl "$@"; }

k version --client >/dev/null 2>&1 || { say "kubectl is not on PATH" >&2; exit 2; }
k get namespace "$NS" >/dev/null 2>&1 || say "namespace $NS does not exist; removing the cluster-wide objects only"

# 1. Nodes the original is updating right now. Its shadows are deleted with
#    its CRD (step 4), and a node it cordoned stays cordoned.
if k get crd "$CRD" >/dev/null 2>&1 && k get deployment -n "$NS" brupop-controller-deployment >/dev/null 2>&1; then
  busy=$(k -n "$NS" get bottlerocketshadows.v2.brupop.bottlerocket.aws \
    -o jsonpath='{range .items[?(@.status.current_state!="Idle")]}{.metadata.name}{" "}{end}' 2>/dev/null || true)
  # The original names a node's shadow brs-<node>.
  for shadow in $busy; do busy_nodes="${busy_nodes:-}${shadow#brs-} "; done
  [ -z "${busy_nodes:-}" ] || say "the original operator is updating: ${busy_nodes}"
fi

# 2. Its workloads first, so nothing acts on nodes or recreates what follows.
k -n "$NS" delete deployment brupop-controller-deployment brupop-apiserver --ignore-not-found --wait=true
# The DaemonSet shares its name with this operator's; only the original's
# carries the label app.kubernetes.io/part-of=brupop.
if [ "$(k -n "$NS" get daemonset brupop-agent -o jsonpath='{.metadata.labels.app\.kubernetes\.io/part-of}' --ignore-not-found)" = brupop ]; then
  k -n "$NS" delete daemonset brupop-agent --wait=true
fi

# 3. Its services, accounts, RBAC (one of its roles may evict any pod) and
#    scheduling priority.
k -n "$NS" delete service brupop-apiserver brupop-controller-server --ignore-not-found
k -n "$NS" delete serviceaccount brupop-agent-service-account brupop-apiserver-service-account \
  brupop-controller-service-account --ignore-not-found
k delete clusterrolebinding brupop-agent-role-binding brupop-apiserver-auth-delegator-role-binding \
  brupop-apiserver-role-binding brupop-controller-role-binding --ignore-not-found
k delete clusterrole brupop-agent-role brupop-apiserver-role brupop-controller-role --ignore-not-found
k delete priorityclass brupop-controller-high-priority --ignore-not-found

# 4. Its certificates, issuers and the Secrets cert-manager made for them
#    (cert-manager leaves a Certificate's Secret behind by default), then its
#    CRD with every shadow (this operator's agents create their own).
if k api-resources --api-group=cert-manager.io -o name 2>/dev/null | grep -q '^certificates'; then
  k -n "$NS" delete certificates.cert-manager.io brupop-apiserver-client-certificate \
    brupop-apiserver-certificate brupop-selfsigned-ca --ignore-not-found
  k -n "$NS" delete issuers.cert-manager.io brupop-root-certificate-issuer selfsigned-issuer --ignore-not-found
fi
k -n "$NS" delete secret brupop-apiserver-client-certificate brupop-apiserver-certificate \
  brupop-root-ca-secret --ignore-not-found
# This operator's CRD has the same name: delete it only while it is the
# original's (it converts through the original's webhook or serves v1).
if k get crd "$CRD" -o jsonpath='{.spec.conversion.strategy} {.spec.versions[*].name}' 2>/dev/null |
  grep -Eq '^Webhook|(^| )v1( |$)'; then
  k delete crd "$CRD" --wait=true
fi

# 5. The check: nothing of the original remains, by name and by its label.
left=""
add() { [ -z "$1" ] || left="$left$1
"; }
for obj in deployment/brupop-apiserver deployment/brupop-controller-deployment \
  service/brupop-apiserver service/brupop-controller-server \
  serviceaccount/brupop-agent-service-account serviceaccount/brupop-apiserver-service-account \
  serviceaccount/brupop-controller-service-account \
  secret/brupop-apiserver-client-certificate secret/brupop-apiserver-certificate secret/brupop-root-ca-secret; do
  add "$(k -n "$NS" get "$obj" -o name --ignore-not-found 2>/dev/null || true)"
done
for obj in clusterrole/brupop-agent-role clusterrole/brupop-apiserver-role clusterrole/brupop-controller-role \
  clusterrolebinding/brupop-agent-role-binding clusterrolebinding/brupop-apiserver-auth-delegator-role-binding \
  clusterrolebinding/brupop-apiserver-role-binding clusterrolebinding/brupop-controller-role-binding \
  priorityclass/brupop-controller-high-priority; do
  add "$(k get "$obj" -o name --ignore-not-found 2>/dev/null || true)"
done
if k api-resources --api-group=cert-manager.io -o name 2>/dev/null | grep -q '^certificates'; then
  for obj in certificates.cert-manager.io/brupop-apiserver-client-certificate \
    certificates.cert-manager.io/brupop-apiserver-certificate certificates.cert-manager.io/brupop-selfsigned-ca \
    issuers.cert-manager.io/brupop-root-certificate-issuer issuers.cert-manager.io/selfsigned-issuer; do
    add "$(k -n "$NS" get "$obj" -o name --ignore-not-found 2>/dev/null || true)"
  done
fi
add "$(k get deployment,daemonset,service,serviceaccount -A -l app.kubernetes.io/part-of=brupop -o name 2>/dev/null || true)"
add "$(k get clusterrole,clusterrolebinding -l app.kubernetes.io/part-of=brupop -o name 2>/dev/null || true)"
if k get crd "$CRD" -o jsonpath='{.spec.conversion.strategy} {.spec.versions[*].name}' 2>/dev/null |
  grep -Eq '^Webhook|(^| )v1( |$)'; then
  add "crd/$CRD (the original's)"
fi
# A node the original was updating and left cordoned: this operator never
# uncordons what it did not cordon, so say it.
for node in ${busy_nodes:-}; do
  if [ "$(k get node "$node" -o jsonpath='{.spec.unschedulable}' --ignore-not-found 2>/dev/null)" = true ]; then
    say "node $node is cordoned and the original operator was updating it: once it runs normally, kubectl uncordon $node"
  fi
done
left=$(printf '%s' "$left" | sort -u)
if [ -n "$left" ]; then
  say "still there of the original operator:"
  say "$left"
  exit 1
fi
say "nothing of the original operator remains in the cluster (namespace $NS kept)"
