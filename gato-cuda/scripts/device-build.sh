#!/usr/bin/env bash
# Build, on a machine with Rust, what device-check.sh runs on a GPU machine that has neither Rust nor a network
# (this workplace's device machines): the release gato binary, the device_check example and the CUDA conformance
# test binary, stripped and packed into .device-bin/gato-device.tar.xz (about 10 MB; .device-bin is ignored by git).
# Carry .device-bin to the GPU machine with the working tree and run device-check.sh there; it unpacks them.
# The binaries link only glibc and open every CUDA library at run time, so a build on an older Linux runs there.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked -p gato-cli --bin gato --example device_check
conformance=$(cargo test --release --locked -p gato-cuda --test conformance --no-run --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*conformance[^"]*"' | tail -1 | sed 's/"executable":"\(.*\)"/\1/')
[ -x "$conformance" ] || { echo "FAIL: no conformance test binary found" >&2; exit 1; }
stage=.device-bin/stage
rm -rf "$stage" && mkdir -p "$stage"
cp target/release/gato target/release/examples/device_check "$stage/"
cp "$conformance" "$stage/conformance"
strip "$stage"/*
tar -C "$stage" -cJf .device-bin/gato-device.tar.xz .
rm -rf "$stage"
ls -la .device-bin/gato-device.tar.xz
