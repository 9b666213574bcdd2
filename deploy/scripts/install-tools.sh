#!/usr/bin/env bash
# Installs what tests/deploy.rs needs on a Debian 12 machine with no registry access for
# images (../shared/DEPLOY.md): podman (+ buildah, runc, the settings that work without
# CAP_SYS_RESOURCE), a local bookworm base image from debootstrap, docker-compose 1.29 for
# `config -q`, promtool, yamllint, shellcheck, and helm 3.16.4 built with Go into
# ~/.cache/ario-tools (reused when present). The CNI `dnsname` plugin lets compose's services find
# each other by name on podman's bridge networks (tests/compose.rs starts docker-compose.yml). Idempotent; every step says what failed.
set -euo pipefail
TOOLS="${ARIO_TOOLS_DIR:-$HOME/.cache/ario-tools}"
mkdir -p "$TOOLS/bin"
export DEBIAN_FRONTEND=noninteractive

need_apt=()
for pair in podman:podman buildah:buildah runc:runc debootstrap:debootstrap \
            docker-compose:docker-compose promtool:prometheus yamllint:yamllint shellcheck:shellcheck \
            /usr/libexec/podman/catatonit:catatonit \
            /usr/lib/cni/dnsname:golang-github-containernetworking-plugin-dnsname; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need_apt+=("${pair#*:}")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "apt: ${need_apt[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" skopeo >/dev/null
fi
# Installing the prometheus package starts a server on :9090 under systemd-less machines only
# when an init runs it; make sure none is left listening.
pkill -x prometheus 2>/dev/null || true

# podman: runc, cgroupfs, file events, explicit ulimits (DEPLOY.md: crun and the default
# ulimits fail here without CAP_SYS_RESOURCE).
if ! grep -q 'runtime = "runc"' /etc/containers/containers.conf 2>/dev/null; then
  mkdir -p /etc/containers
  cat > /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
fi

# A local base image: no image can be pulled here. Tagged as the name the Dockerfile uses.
if ! podman image exists docker.io/library/debian:bookworm-slim; then
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  mirror="${mirror:-http://deb.debian.org/debian}"
  root=$(mktemp -d)
  echo "debootstrap bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
  tar -C "$root" -c . | podman import - localhost/localbase:bookworm >/dev/null
  podman tag localhost/localbase:bookworm docker.io/library/debian:bookworm-slim
  rm -rf "$root"
fi

# helm 3.16.4 with the Kubernetes version its Makefile would stamp in (else it assumes 1.20).
if [ ! -x "$TOOLS/bin/helm" ]; then
  command -v go >/dev/null || { echo "go is needed to build helm"; exit 1; }
  echo "go install helm v3.16.4 (a few minutes cold)"
  GOBIN="$TOOLS/bin" GOFLAGS=-mod=mod go install \
    -ldflags "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=31" \
    helm.sh/helm/v3/cmd/helm@v3.16.4
fi
# kubeconform 0.7.0 and the Kubernetes 1.31 JSON schemas, offline: kubernetes-validate's bundled
# copy made readable by kubeconform (localize-k8s-schemas.py).
if [ ! -x "$TOOLS/bin/kubeconform" ]; then
  echo "go install kubeconform v0.7.0"
  GOBIN="$TOOLS/bin" GOFLAGS=-mod=mod go install github.com/yannh/kubeconform/cmd/kubeconform@v0.7.0
fi
if [ ! -f "$TOOLS/k8s-schemas/v1.31.0-local-strict/statefulset-apps-v1.json" ]; then
  echo "kubernetes-validate (schemas for kubeconform)"
  python3 -m venv "$TOOLS/kubernetes-validate"
  "$TOOLS/kubernetes-validate/bin/pip" install -q kubernetes-validate
  "$TOOLS/kubernetes-validate/bin/python" "$(dirname "$0")/localize-k8s-schemas.py" 1.31.0 "$TOOLS/k8s-schemas"
fi
"$TOOLS/bin/helm" version --short
"$TOOLS/bin/kubeconform" -v
promtool --version 2>&1 | head -1
podman --version
docker-compose --version
