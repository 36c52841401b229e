#!/usr/bin/env bash
# Fills in the krew plugin manifest deploy/krew/brupop.yaml for a release and
# prints it: the version, the repository the archives are downloaded from,
# and each archive's sha256. Refuses a malformed version or repository, an
# archive without kubectl-brupop at its top, and leaves no ${...} unfilled.
#
#   deploy/krew/release.sh 0.1.0 <owner>/<repo> \
#     kubectl-brupop-linux-amd64.tar.gz kubectl-brupop-linux-arm64.tar.gz > brupop.yaml
#
# Each archive holds the binary built for its platform, e.g.
#   tar -czf kubectl-brupop-linux-amd64.tar.gz \
#     -C target/x86_64-unknown-linux-musl/release kubectl-brupop
set -euo pipefail
die() { echo "krew release: $*" >&2; exit 1; }
[ $# -eq 4 ] || { sed -n '7,8p' "$0" | sed 's/^# *//' >&2; exit 2; }
version=$1 repository=$2 amd64=$3 arm64=$4
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || die "version '$version' is not MAJOR.MINOR.PATCH (without a leading v)"
[[ $repository =~ ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ ]] || die "repository '$repository' is not <owner>/<name>"
sha() {
  [ -f "$1" ] || die "no archive $1"
  local listing
  listing=$(tar -tzf "$1" 2>/dev/null) || die "$1 is not a .tar.gz archive"
  sed 's#^\./##' <<<"$listing" | grep -qx kubectl-brupop || die "$1 does not hold kubectl-brupop at its top"
  sha256sum "$1" | cut -d' ' -f1
}
sha_amd64=$(sha "$amd64")
sha_arm64=$(sha "$arm64")
template="$(dirname "$0")/brupop.yaml"
out=$(sed -e "s#\${VERSION}#$version#g" -e "s#\${REPOSITORY}#$repository#g" \
  -e "s#\${SHA256_LINUX_AMD64}#$sha_amd64#g" -e "s#\${SHA256_LINUX_ARM64}#$sha_arm64#g" "$template" | grep -v '^#')
if grep -q '\${' <<<"$out"; then die "left unfilled: $(grep -o '\${[A-Z0-9_]*}' <<<"$out" | sort -u | tr '\n' ' ')"; fi
printf '%s\n' "$out"
