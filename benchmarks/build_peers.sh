#!/usr/bin/env bash
# Build other people's microGPT ports for benchmarks/peers.py, from their own sources (never vendored).
#
#   benchmarks/build_peers.sh OUT_DIR [CPP_SRC] [RUST_SRC] [C_SRC]
#
# CPP_SRC: a clone of https://github.com/Charbel199/microgpt.cpp
# RUST_SRC: a clone of https://github.com/mplekh/rust-microgpt
# C_SRC: a clone of https://github.com/enjector/microgpt-c (only src/ and
#        demos/character-level/names/ are used)
# Any may be "-" (skip). The ports fix their size and step count at compile time, so each
# (config, step count) is its own binary: OUT_DIR/<peer>-<config>-<steps>. The C++ and Rust
# sources are copied to a scratch directory and their constants set with sed; microgpt-c takes
# them as -D defines (float64, batch 1, MLP 4 x n_emb). Nothing else is changed. Flags are the
# ports' own: g++ -std=c++17 -Ofast -march=native; cargo build --release; microgpt-c's Release
# build (gcc -O3 -march=native -DMICROGPT_SIMD=1).
set -euo pipefail
out=${1:?usage: build_peers.sh OUT_DIR [CPP_SRC] [RUST_SRC] [C_SRC]}
cpp=${2:--}
rust=${3:--}
csrc=${4:--}
steps=${STEPS:-"300 1300"}
configs=${CONFIGS:-"default:16:1 emb32-l2:32:2 emb64-l2:64:2"}
mkdir -p "$out"
out=$(cd "$out" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

for c in $configs; do
  IFS=: read -r name emb layers <<<"$c"
  for s in $steps; do
    if [ "$cpp" != "-" ]; then
      sed -e "s/constexpr int N_EMBD = [0-9]*;/constexpr int N_EMBD = $emb;/" \
          -e "s/constexpr int N_LAYER = [0-9]*;/constexpr int N_LAYER = $layers;/" \
          -e "s/constexpr int NUM_STEPS = [0-9]*;/constexpr int NUM_STEPS = $s;/" \
          "$cpp/microgpt.cpp" >"$scratch/microgpt.cpp"
      grep -q "N_EMBD = $emb;" "$scratch/microgpt.cpp" && grep -q "NUM_STEPS = $s;" "$scratch/microgpt.cpp"
      g++ -std=c++17 -Ofast -march=native "$scratch/microgpt.cpp" -o "$out/cpp-$name-$s"
    fi
    if [ "$rust" != "-" ]; then
      rm -rf "$scratch/rust" && cp -r "$rust" "$scratch/rust" && rm -rf "$scratch/rust/target"
      sed -i -e "s/let n_embd = [0-9]*;/let n_embd = $emb;/" \
             -e "s/let n_layer = [0-9]*;/let n_layer = $layers;/" \
             -e "s/let num_steps = [0-9]*;/let num_steps = $s;/" "$scratch/rust/src/main.rs"
      grep -q "let n_embd = $emb;" "$scratch/rust/src/main.rs"
      (cd "$scratch/rust" && cargo build --release --quiet)
      cp "$scratch/rust/target/release/rust-microgpt" "$out/rust-$name-$s"
    fi
    if [ "$csrc" != "-" ]; then
      gcc -O3 -march=native -DMICROGPT_SIMD=1 -DN_EMBD="$emb" -DN_LAYER="$layers" \
          -DMLP_DIM=$((4 * emb)) -DNUM_STEPS="$s" -DBATCH_SIZE=1 -I"$csrc/src" \
          "$csrc/src/microgpt.c" "$csrc/src/microgpt_organelle.c" \
          "$csrc/demos/character-level/names/main.c" -o "$out/c-$name-$s" -lm
    fi
  done
done
ls -1 "$out"
