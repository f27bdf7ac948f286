#!/usr/bin/env bash
# Installs what cnnviz needs from Debian 12's packages. Idempotent: does nothing when all are present.
#   scripts/setup.sh
set -euo pipefail
packages=(cmake ninja-build g++ libtorch-dev libopencv-dev libcli11-dev nlohmann-json3-dev libspdlog-dev
          libgtest-dev libpng-dev libjpeg-dev python3-torch python3-torchvision chromium)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "setup: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
