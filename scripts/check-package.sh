#!/usr/bin/env bash
# Packs the package and checks it as a user would get it: publint, are-the-types-wrong,
# and loading every public entry point with both require() and import.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

tarball="$(npm pack --silent --pack-destination "$tmp" | tail -n 1)"
npx --no-install publint "$tmp/$tarball" --strict
npx --no-install attw "$tmp/$tarball" --profile node16

mkdir -p "$tmp/app/node_modules/flowchain"
tar -xzf "$tmp/$tarball" -C "$tmp/app/node_modules/flowchain" --strip-components=1
for dep in eventemitter3 uuid better-sqlite3 pg pg-pool pg-protocol pg-types pg-connection-string pg-int8 pgpass split2 postgres-array postgres-bytea postgres-date postgres-interval xtend bindings file-uri-to-path pg-cloudflare; do
  [ -e "node_modules/$dep" ] && ln -s "$PWD/node_modules/$dep" "$tmp/app/node_modules/$dep"
done
entries="$(node -e "console.log(Object.keys(require('./package.json').exports).filter(k => k !== './package.json').map(k => k === '.' ? 'flowchain' : 'flowchain/' + k.slice(2)).join(' '))")"
cd "$tmp/app"
for entry in $entries; do
  node -e "const m = require('$entry'); if (Object.keys(m).length === 0) { console.error('require($entry) exported nothing'); process.exit(1); } console.log('require($entry):', Object.keys(m).length, 'exports')"
  node --input-type=module -e "const m = await import('$entry'); if (Object.keys(m).length === 0) { console.error('import($entry) exported nothing'); process.exit(1); } console.log('import($entry):', Object.keys(m).length, 'exports')"
done
node -e "
const { FlowChain } = require('flowchain');
new FlowChain().flow({ run: (t) => t.next() }).start().then((d) => console.log('CJS chain ran:', JSON.stringify(d)));
"
