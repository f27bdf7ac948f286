#!/usr/bin/env bash
# Installs what cnnviz needs from Debian 12's packages. Idempotent: does nothing when all are present.
# Chromium (for the viewer's browser test, ctest label "browser") is optional: if it cannot be
# installed, that test skips and everything else goes on.
#   scripts/setup.sh
set -euo pipefail
packages=(cmake ninja-build g++ libtorch-dev libopencv-dev libcli11-dev nlohmann-json3-dev libspdlog-dev
          libgtest-dev libpng-dev libjpeg-dev python3-torch python3-torchvision)
optional=(chromium)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=() missing_optional=()
for package in "${packages[@]}"; do installed "$package" || missing+=("$package"); done
for package in "${optional[@]}"; do installed "$package" || missing_optional+=("$package"); done
[ ${#missing[@]} -eq 0 ] && [ ${#missing_optional[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ${#missing_optional[@]} -gt 0 ]; then
  echo "setup: installing ${missing_optional[*]} (optional: the browser test)" >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing_optional[@]}" >/dev/null ||
    echo "setup: could not install ${missing_optional[*]}; the browser test will skip" >&2
fi
