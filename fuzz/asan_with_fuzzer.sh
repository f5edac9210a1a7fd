#!/bin/sh
# Link clang's ASan runtime (which carries UBSan's handlers) and libFuzzer into one shared library,
# to LD_PRELOAD under the native fuzz target.
#
# Why one library: the extension, built with -fsanitize=fuzzer-no-link, reports coverage through
# __sanitizer_cov_* hooks. A preloaded plain ASan runtime defines weak stand-ins for them that
# would win over the libFuzzer inside atheris (loaded later, as a Python module), so the fuzzer
# would be blind to the C code. With libFuzzer in the preloaded library its strong definitions
# win, and atheris, finding LLVMFuzzerRunDriver already loaded, uses that libFuzzer.
#
# Usage: fuzz/asan_with_fuzzer.sh OUTPUT.so   (needs clang with compiler-rt: Debian libclang-rt-*-dev)
set -eu
out=$1
dir=$(clang -print-runtime-dir)
arch=$(uname -m)
find_lib() {  # the runtime dir is lib/linux with -ARCH names, or lib/TRIPLE without (newer clang)
    for f in "$dir/libclang_rt.$1-$arch.a" "$dir/libclang_rt.$1.a"; do
        if [ -f "$f" ]; then echo "$f"; return; fi
    done
    echo "asan_with_fuzzer.sh: no libclang_rt.$1 in $dir (install clang's compiler-rt)" >&2
    exit 1
}
asan=$(find_lib asan)
fuzzer=$(find_lib fuzzer_no_main)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# ASan's preinit object registers a .preinit_array entry, which a shared library may not have;
# the preload initialises the runtime early enough without it.
cp "$asan" "$tmp/asan.a"
ar d "$tmp/asan.a" $(ar t "$tmp/asan.a" | grep preinit || true)
mkdir -p "$(dirname "$out")"
clang++ -shared -o "$out" -Wl,--whole-archive "$fuzzer" "$tmp/asan.a" -Wl,--no-whole-archive \
    -lpthread -ldl -lrt -lm
