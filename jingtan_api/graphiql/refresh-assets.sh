#!/usr/bin/env bash
# Refresh the GraphiQL page's assets (served from /graphiql-assets/, so the page works offline):
# fetch the pinned npm releases with `npm pack`, copy the browser bundles and their licence files into
# jingtan_api/graphiql/assets/, and print their sha384 hashes (they match
# the integrity hashes unpkg publishes for the same files).
#   jingtan_api/graphiql/refresh-assets.sh [graphiql-version] [react-version]
set -euo pipefail
GRAPHIQL_VERSION="${1:-3.8.3}"
REACT_VERSION="${2:-18.2.0}"
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/assets"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
for spec in "graphiql@$GRAPHIQL_VERSION" "react@$REACT_VERSION" "react-dom@$REACT_VERSION"; do
  name="${spec%@*}"
  mkdir -p "$name"
  tarball="$(npm pack --silent "$spec")"
  tar xzf "$tarball" -C "$name"
done
mkdir -p "$out"
rm -f "$out"/*
cp graphiql/package/graphiql.min.js graphiql/package/graphiql.min.css "$out/"
cp graphiql/package/LICENSE "$out/graphiql.LICENSE"
cp react/package/umd/react.production.min.js "$out/"
cp react/package/LICENSE "$out/react.LICENSE"
cp react-dom/package/umd/react-dom.production.min.js "$out/"
cp react-dom/package/LICENSE "$out/react-dom.LICENSE"
printf 'graphiql %s\nreact %s\nreact-dom %s\n' "$GRAPHIQL_VERSION" "$REACT_VERSION" "$REACT_VERSION" > "$out/VERSIONS"
cd "$out"
for f in *.js *.css; do
  echo "$f sha384-$(openssl dgst -sha384 -binary "$f" | base64 -w0)"
done
echo "pinned: graphiql $GRAPHIQL_VERSION, react $REACT_VERSION (jingtan_api/graphiql/assets/VERSIONS)"
