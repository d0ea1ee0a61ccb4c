#!/usr/bin/env bash
# Installs what the build and the tests need, builds usernet with -Werror
# and runs the whole test suite (unit, fuzz seeds, end-to-end in network
# namespaces, QEMU guests).
#
#   scripts/test.sh              g++ build in build-test/
#   scripts/test.sh --sanitize   clang build with ASan+UBSan in build-asan/
#
# End-to-end and QEMU tests need root (network namespaces) and the tools
# install-deps.sh installs; without them they are reported as skipped --
# except under CI=true (.ci/run sets it), where anything missing, and any
# test skipped, is a failure. Extra arguments after -- go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=release
ctest_args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--sanitize) mode=sanitize; shift ;;
	--) shift; ctest_args=("$@"); break ;;
	*) echo "usage: $0 [--sanitize] [-- ctest args]" >&2; exit 2 ;;
	esac
done

./scripts/install-deps.sh

if [ "$mode" = sanitize ]; then
	dir=build-asan
	cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
		-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DUSERNET_WERROR=ON -DUSERNET_SANITIZE=ON
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
	dir=build-test
	cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DCMAKE_C_COMPILER=gcc -DCMAKE_CXX_COMPILER=g++ -DUSERNET_WERROR=ON
fi
cmake --build "$dir"
# The tests are mostly waiting on namespaces and guests, not CPU: run a few
# at once. Each test names its own namespaces and ports, so they don't clash.
ctest --test-dir "$dir" --output-on-failure -j "${USERNET_TEST_JOBS:-3}" "${ctest_args[@]}"
