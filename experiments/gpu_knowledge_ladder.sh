#!/usr/bin/env bash
# The knowledge ladder on fact world version 2 (issue 29) on one GPU, resumable in calls of under
# 10 minutes on a warm machine:
#   1. train the S pair, M, L and the ~110M-parameter XL and the Sec. 5 continuations
#      (experiments.gpu_ladder; every training pauses after TRAIN_WALL_S and the next call resumes
#      it, skipping what is done);
#   2. rank every object after each prompt of the training and held-out template families on each
#      trained model (experiments.knowledge_families, one process per model);
#   3. on the models too large to come back from a call (ANALYSE): truth probes with the power to
#      see (experiments.truth_probes, fits on every core), the sentiment probe (Table 7) and
#      catch-tag-release (experiments.run);
#   4. check the weights against the committed hashes (EXPECT) and pack it all into $OUT (at
#      most 8 files: gpu_ladder's, then families.tar.gz).
#      CORPUS=data/corpus/ladder_v2 bash experiments/gpu_knowledge_ladder.sh   (carry the corpus)
# CORPUS may be a transport copy whose facts.json is xz-compressed (facts.json.xz): it is unpacked
# in place first. Deterministic: a later call retrains identical weights.
set -euo pipefail
OUT=${OUT:-knowledge_ladder_out}
CORPUS=${CORPUS:-data/corpus/ladder_v2}
WORK=${WORK:-results/_scratch/knowledge_ladder}  # git-ignored: kept on a warm machine
SIZES=${SIZES:-ladder_s,ladder_m:noqknorm,ladder_l:noqknorm,ladder_xl:noqknorm}
CITIES=${CITIES:-300}
REASON_LM=${REASON_LM:-ladder_reason}
ANALYSE=${ANALYSE-ladder_xl_noqknorm_s0,ladder_l_noqknorm_s0}
DEVICE=${DEVICE:-cuda}
JOBS=${JOBS:-$(nproc)}
mkdir -p "$OUT" "$WORK/families" "$WORK/analysis"
[ -f "$CORPUS/facts.json.xz" ] && xz -d -f "$CORPUS/facts.json.xz"
python3 -m experiments.gpu_ladder --out "$OUT" --corpus "$CORPUS" --work "$WORK" --sizes "$SIZES" \
    --variants noqknorm,qknorm --seeds 0 --reason-lm "$REASON_LM" --reason-variants noqknorm \
    --reason-seeds 1,2 --max-wall-s "${TRAIN_WALL_S:-400}" --deadline-s "${TRAIN_DEADLINE_S:-480}" \
    --threads 2 | grep -v '^\[.*s\] ladder_.*: ' || true
for run in "$WORK"/runs/*; do
    name=$(basename "$run")
    [ -f "$run/model.safetensors" ] && [ ! -f "$WORK/families/$name/summary.csv" ] || continue
    timeout "${RANK_TIMEOUT_S:-150}" python3 -m experiments.knowledge_families --models "$run" \
        --facts "$CORPUS/facts.json" --sets 2:train,2:eval --cities "$CITIES" \
        --out "$WORK/families/$name" > "$WORK/families/$name.log" 2>&1 &
done
wait || true
for name in ${ANALYSE//,/ }; do
    run="$WORK/runs/$name" there="$WORK/analysis/$name" model="ladder2_${name#ladder_}"
    model=${model%_s0}
    [ -f "$run/model.safetensors" ] && [ ! -f "$there/done" ] || continue
    mkdir -p "$there"
    timeout "${PROBE_TIMEOUT_S:-300}" python3 -m experiments.truth_probes --models "$run" \
        --facts "$CORPUS/facts.json" --facts-version 2 --device "$DEVICE" --n-jobs "$JOBS" \
        --out "$there/truth_probes" > "$there/truth_probes.log" 2>&1 || true
    for experiment in ctr "probing data.statements=sentiment"; do
        # shellcheck disable=SC2086  # the experiment's overrides are separate words
        timeout "${SUITE_TIMEOUT_S:-150}" python3 -m experiments.run model="$model" \
            model.path="$(realpath "$run")" model.device="$DEVICE" experiment=$experiment logging=disabled \
            results_dir="$there/suite" >> "$there/suite.log" 2>&1 || true
    done
    [ -f "$there/truth_probes/cv_best_layers.csv" ] && touch "$there/done"
done
# A rerun checks its weights against the committed hashes (deterministic training): OK or FAILED
EXPECT=${EXPECT:-results/ladder2/training/weights.sha256}
if [ -f "$EXPECT" ]; then
    expect=$(realpath "$EXPECT")
    (cd "$WORK/runs" && sha256sum -c --ignore-missing "$expect") > "$WORK/families/weights_check.txt" 2>&1 || true
fi
tail -n 2 "$WORK"/families/*.log "$WORK"/analysis/*/*.log || true
tar czf "$OUT/families.tar.gz" -C "$WORK" families analysis
