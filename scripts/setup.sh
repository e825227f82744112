#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for robust and builds the binary.
# - Mesa's software Vulkan driver (lavapipe) so that the wgpu code path works without a GPU;
# - the release build of `robust` in ./target/release (override with CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  if ! dpkg -s mesa-vulkan-drivers libvulkan1 >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1
  fi
else
  echo "note: not root or no apt-get: install Mesa's Vulkan drivers yourself for --device wgpu" >&2
fi
cargo build --release --workspace
if [ -n "${CARGO_TARGET_DIR:-}" ] && [ "$CARGO_TARGET_DIR" != "$PWD/target" ]; then
  mkdir -p target/release
  ln -sf "$CARGO_TARGET_DIR/release/robust" target/release/robust
fi
echo "built ./target/release/robust"
