#!/bin/sh
# Reproduce build/DemoToken.json from DemoToken.sol with a pinned solc-js (npm).
# Nothing compiles at install time: the ABI and bytecode are committed.
set -eu
SOLC_VERSION=0.8.26
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
npm install --silent --no-audit --no-fund "solc@$SOLC_VERSION" >/dev/null
npx --no-install solcjs --optimize --bin --abi -o out "$HERE/DemoToken.sol" >/dev/null
node -e '
const fs = require("fs");
const files = fs.readdirSync("out");
const pick = (ext) => fs.readFileSync("out/" + files.find((f) => f.endsWith("DemoToken" + ext)), "utf8");
const build = {
  contractName: "DemoToken",
  compiler: "solc-js " + process.argv[1],
  optimizer: true,
  abi: JSON.parse(pick(".abi")),
  bytecode: "0x" + pick(".bin").trim(),
};
fs.writeFileSync(process.argv[2], JSON.stringify(build, null, 2) + "\n");
' "$SOLC_VERSION" "$HERE/build/DemoToken.json"
echo "wrote $HERE/build/DemoToken.json"
