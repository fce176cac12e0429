#!/usr/bin/env bash
# Install the Debian packages the test suite needs, only those missing. Idempotent.
set -euo pipefail
needed=()
# (package, command it provides)
while read -r pkg cmd; do
  [[ -z "$pkg" ]] && continue
  command -v "$cmd" >/dev/null 2>&1 || [[ -x "$cmd" ]] || needed+=("$pkg")
done <<'LIST'
postgresql /usr/lib/postgresql/15/bin/postgres
shellcheck shellcheck
prometheus promtool
LIST
((${#needed[@]})) || exit 0
echo "installing system packages: ${needed[*]}" >&2
sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
