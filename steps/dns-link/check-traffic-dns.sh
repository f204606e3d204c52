#!/usr/bin/env bash
# check-traffic-dns.sh DIR — run shared/azure-specs/check-traffic over recorded dns-link traffic
# (files under DIR, recursively), resolving oav's private DNS path ambiguity with the real spec
# operations instead of setting those exchanges aside.
#
# oav matches `privateDnsZones/{z}/virtualNetworkLinks[/{l}]` and `privateDnsZones/{z}/ALL` to
# both the VirtualNetworkLinks_* / RecordSets_List operations and the record-set templates
# `{recordType}[/{relativeRecordSetName}]` (MULTIPLE_OPERATIONS_FOUND; oav ignores the
# recordType enum). So:
#   1. every other exchange is checked by check-traffic against all the saved specs;
#   2. the link and ALL exchanges are checked by the same check-traffic.js against a copy of
#      privatedns.json 2024-06-01 without the `{recordType}` paths, so oav matches them to
#      exactly their VirtualNetworkLinks_* / RecordSets_List operation and validates request
#      and response against it.
# Exit 0 only when both pass. Needs node and the oav install check-traffic uses.
set -euo pipefail
[[ $# -eq 1 && -d $1 ]] || { echo "usage: check-traffic-dns.sh DIR" >&2; exit 2; }
shared=${NETSTEP_SHARED:-$(cd "$(dirname "$0")/../../.." && pwd)/shared}
specs=$shared/azure-specs
[[ -x $specs/check-traffic ]] || { echo "check-traffic not found under $specs (set NETSTEP_SHARED)" >&2; exit 2; }
export OAV_DIR=${OAV_DIR:-$HOME/.cache/netstep-oav}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/plain" "$work/links" "$work/oav"
n=0
while IFS= read -r -d '' f; do
  n=$((n + 1))
  url=$(node -e 'const p=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));console.log(((p.liveRequest||{}).url||"").split("?")[0])' "$f")
  if [[ $url =~ /privateDnsZones/[^/]+/(virtualNetworkLinks(/[^/]+)?|ALL)$ ]]; then
    cp "$f" "$work/links/$n-$(basename "$f")"
  else
    cp "$f" "$work/plain/$n-$(basename "$f")"
  fi
done < <(find "$1" -name '*.json' -print0)
rel=specification/privatedns/resource-manager/Microsoft.Network/stable/2024-06-01/privatedns.json
mkdir -p "$work/oav/$(dirname "$rel")"
cp "$specs/check-traffic.js" "$work/oav/"
node -e '
  const fs = require("fs");
  const spec = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  for (const p of Object.keys(spec.paths)) if (p.includes("{recordType}")) delete spec.paths[p];
  fs.writeFileSync(process.argv[2], JSON.stringify(spec, null, 1));
' "$specs/$rel" "$work/oav/$rel"
status=0
echo "== all exchanges but links and ALL ($(ls "$work/plain" | wc -l) files): check-traffic"
"$specs/check-traffic" "$work/plain" || status=1
echo "== links and ALL ($(ls "$work/links" | wc -l) files): check-traffic.js with privatedns.json minus {recordType} paths"
if [[ -n $(ls "$work/links") ]]; then
  node "$work/oav/check-traffic.js" "$work/links" || status=1
fi
exit $status
