#!/bin/sh
# Installs the Debian 12 packages nnc needs, only those that are missing.
# Usage: scripts/install-deps.sh [extra packages...]
set -e
pkgs="flex bison llvm-19-dev libcriterion-dev cmake zlib1g-dev pkg-config gcc g++ make libcjson-dev python3-numpy python3-torch dataset-fashion-mnist $*"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
