#!/usr/bin/env bash
# The knowledge ladder on fact world version 2 (issue 29), in one GPU call: train every size of the
# pair and the Sec. 5 continuations (experiments.gpu_ladder), then rank every object after each
# prompt of the training and held-out template families on each trained model
# (experiments.knowledge_families, one process per model), and pack it all into $OUT.
#   bash experiments/gpu_knowledge_ladder.sh      (carry the corpus; ~8 min on one H100)
# CORPUS may be a transport copy whose facts.json is xz-compressed (facts.json.xz): it is unpacked
# in place first. Deterministic: a later call retrains identical weights.
set -euo pipefail
OUT=${OUT:-knowledge_ladder_out}
CORPUS=${CORPUS:-data/corpus/ladder_v2}
WORK=${WORK:-/tmp/knowledge_ladder}
SIZES=${SIZES:-ladder_s,ladder_m,ladder_l}
CITIES=${CITIES:-300}
REASON_LM=${REASON_LM:-ladder_reason}
mkdir -p "$OUT" "$WORK/families"
[ -f "$CORPUS/facts.json.xz" ] && xz -d -f "$CORPUS/facts.json.xz"
python3 -m experiments.gpu_ladder --out "$OUT" --corpus "$CORPUS" --work "$WORK" --sizes "$SIZES" \
    --variants noqknorm,qknorm --seeds 0 --reason-lm "$REASON_LM" --reason-variants noqknorm --reason-seeds 1,2 \
    --deadline-s "${TRAIN_DEADLINE_S:-390}" --threads 2 | grep -v '^\[.*s\] ladder_.*: ' || true
for run in "$WORK"/runs/*; do
    [ -f "$run/model.safetensors" ] || continue
    name=$(basename "$run")
    timeout "${RANK_TIMEOUT_S:-150}" python3 -m experiments.knowledge_families --models "$run" \
        --facts "$CORPUS/facts.json" --sets 2:train,2:eval --cities "$CITIES" \
        --out "$WORK/families/$name" > "$WORK/families/$name.log" 2>&1 &
done
wait || true
tail -n 2 "$WORK"/families/*.log || true
tar czf "$OUT/families.tar.gz" -C "$WORK" families
