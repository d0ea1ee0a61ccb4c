#!/bin/sh
# Line coverage the committed corpora reach, per source area, as in
# fuzz/README.md:
#   fuzz/coverage.sh [build-dir]        (default: build-cov)
# Builds every harness with clang's source-based coverage
# (-fprofile-instr-generate -fcoverage-mapping, no sanitizers), runs each
# once over its corpus (-runs=0: nothing is mutated or written), merges the
# profiles and reports per file (llvm-cov report) and per area (src/wire,
# src/gateway, ...). Needs clang, llvm-profdata and llvm-cov (Debian:
# clang-14, llvm-14).
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build-cov}
profdata=$(command -v llvm-profdata-14 || command -v llvm-profdata)
cov=$(command -v llvm-cov-14 || command -v llvm-cov)
harnesses="ethernet arp ipv4 tcp_options dhcp4 dns offload datapath stream dhcp_leases dns_upstream"

cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++ -DUSERNET_TESTS=OFF -DUSERNET_FUZZ=ON \
    -DUSERNET_FUZZ_COVERAGE=ON >/dev/null
targets=""
for h in $harnesses; do targets="$targets --target fuzz_$h"; done
# shellcheck disable=SC2086
cmake --build "$build" -j2 $targets >/dev/null

prof=$build/fuzz/profiles
rm -rf "$prof"
mkdir -p "$prof"
objects=""
for h in $harnesses; do
    LLVM_PROFILE_FILE="$prof/$h.profraw" "$build/fuzz/fuzz_$h" -runs=0 \
        "$src/fuzz/corpus/$h" >"$prof/$h.log" 2>&1
    if [ -z "$objects" ]; then objects="$build/fuzz/fuzz_$h"
    else objects="$objects -object $build/fuzz/fuzz_$h"; fi
done
"$profdata" merge -sparse "$prof"/*.profraw -o "$prof/all.profdata"

ignore='(/fuzz/|/tests/|/usr/)'
# shellcheck disable=SC2086
"$cov" report $objects -instr-profile="$prof/all.profdata" -ignore-filename-regex="$ignore" \
    | tee "$prof/report.txt"
echo
# shellcheck disable=SC2086
"$cov" export $objects -instr-profile="$prof/all.profdata" -ignore-filename-regex="$ignore" \
    -summary-only >"$prof/summary.json"
python3 - "$prof/summary.json" "$src/" <<'PY'
import json, sys
from collections import defaultdict
data = json.load(open(sys.argv[1]))["data"][0]["files"]
root = sys.argv[2]
area = defaultdict(lambda: [0, 0, 0, 0])
for f in data:
    name = f["filename"].replace(root, "")
    parts = name.split("/")
    key = "/".join(parts[:2]) if parts[0] == "src" else parts[0]
    l, fn = f["summary"]["lines"], f["summary"]["functions"]
    a = area[key]
    a[0] += l["count"]; a[1] += l["covered"]; a[2] += fn["count"]; a[3] += fn["covered"]
print("| area | lines | covered | line coverage | functions covered |")
print("| --- | ---: | ---: | ---: | ---: |")
tot = [0, 0, 0, 0]
for k in sorted(area):
    a = area[k]
    tot = [x + y for x, y in zip(tot, a)]
    print(f"| {k} | {a[0]} | {a[1]} | {100*a[1]/max(a[0],1):.1f}% | {a[3]}/{a[2]} |")
print(f"| total | {tot[0]} | {tot[1]} | {100*tot[1]/max(tot[0],1):.1f}% | {tot[3]}/{tot[2]} |")
PY
