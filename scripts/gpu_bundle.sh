#!/usr/bin/env bash
# make gpu-bundle: what an air-gapped GPU node needs beside the tree to run make gpu-check -- the
# pure-Python wheels of hydra-core, omegaconf and antlr4 (at this environment's versions) and the
# MNIST / Fashion-MNIST archives -- in gpu_bundle/ (git-ignored; about 43 MB).
#   scripts/gpu_bundle.sh [PYTHON] [DATA_SOURCE]
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-.venv/bin/python}
source=${2:-../shared/data}
out=gpu_bundle
rm -rf "$out.tmp"
mkdir -p "$out.tmp/wheels"
for name in hydra-core omegaconf antlr4-python3-runtime; do
  version=$("$py" -c "from importlib.metadata import version; print(version('$name'))")
  # antlr4 4.9.3 is published as a source archive only: pip wheel builds its (pure-Python) wheel
  "$py" -m pip wheel -q --no-deps -w "$out.tmp/wheels" "$name==$version"
done
for dataset in MNIST FashionMNIST; do
  if ! ls "$source/$dataset/raw/"*.gz >/dev/null 2>&1; then
    echo "error: no $dataset archives in $source/$dataset/raw/ (give the data folder as the second argument)" >&2
    rm -rf "$out.tmp"; exit 2
  fi
  mkdir -p "$out.tmp/data/$dataset/raw"
  cp "$source/$dataset/raw/"*.gz "$out.tmp/data/$dataset/raw/"
done
rm -rf "$out" && mv "$out.tmp" "$out"
echo "wrote $out/ ($(du -sh "$out" | cut -f1)): $(ls "$out/wheels" | tr '\n' ' ')"
