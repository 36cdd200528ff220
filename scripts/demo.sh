#!/usr/bin/env bash
# The main job (`make demo`): three noisy labelers -> consensus -> curriculum training (short) -> fast CPU
# prediction -> FLARE evaluation, all on synthetic phantoms, with stock nnU-Net commands where users expect them;
# then the shipped reference model (models/light-unet-phantoms) predicts fresh flare phantoms and is evaluated.
# Everything lands in demo_work/ (override with DEMO_WORK=...). About 5-8 minutes on 2 CPU cores.
set -euo pipefail

WORK=${DEMO_WORK:-demo_work}
TRAINER=${DEMO_TRAINER:-nnUNetTrainerCDL_5epochs}
REFERENCE=${DEMO_REFERENCE_MODEL:-$(pwd)/models/light-unet-phantoms}
rm -rf "$WORK"
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
export nnUNet_raw="$WORK/nnUNet_raw" nnUNet_preprocessed="$WORK/nnUNet_preprocessed" nnUNet_results="$WORK/nnUNet_results"
export nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-1}
eval "$(nnunet-cdl env)"
step() { printf '\n=== %s (at %d s) ===\n' "$*" "$SECONDS"; }

step "1/9 synthetic abdominal CT phantoms with three noisy pseudo-labelers"
nnunet-cdl synth --out "$WORK/synth" --dataset-id 601 --cases 10 --test-cases 2 --preset small --seed 0 --sources 3
SYNTH="$WORK/synth/Dataset601_CDLPhantom"

step "2/9 label cleaning (stray values such as 14 or 255 -> 0)"
nnunet-cdl clean-labels --labels "$SYNTH/pseudolabels/source_1" --out "$WORK/source_1_clean" \
    --dataset-json "$SYNTH/dataset.json"

step "3/9 consensus: reliability scores pick each case's label, difficulty scores split easy/hard/erroneous"
nnunet-cdl consensus --images "$SYNTH/imagesTr" --labels "$SYNTH"/pseudolabels/* \
    --out "$nnUNet_raw" --dataset-id 602
CONS=$(ls -d "$nnUNet_raw"/Dataset602_*)
head -n 20 "$CONS/consensus.csv"

step "4/9 plan and preprocess with the light U-Net planner (nnUNetPlansLightUNet)"
nnunet-cdl plan -d 602 -c 3d_fullres -np 1

step "5/9 stock nnUNetv2_train with the easy-then-hard curriculum trainer ($TRAINER)"
nnUNetv2_train 602 3d_fullres 0 -tr "$TRAINER" -p nnUNetPlansLightUNet -device cpu

step "6/9 fast center-first CPU prediction of the test cases"
nnunet-cdl predict -i "$SYNTH/imagesTs" -o "$WORK/predictions" -d 602 -c 3d_fullres -f 0 \
    -tr "$TRAINER" -p nnUNetPlansLightUNet -device cpu --record "$WORK/prediction_records"

step "7/9 FLARE evaluation against the clean phantom labels"
nnunet-cdl evaluate --truth "$SYNTH/labelsTs" --pred "$WORK/predictions" --out "$WORK/evaluation"

if [ -f "$REFERENCE/fold_0/checkpoint_final.pth" ]; then
    step "8/9 the shipped reference model ($(basename "$REFERENCE")) on two fresh flare phantoms (59 and 203 slices)"
    nnunet-cdl synth --out "$WORK/flare" --dataset-id 603 --cases 1 --test-cases 2 --preset flare --seed 1 --sources 1
    FLARE="$WORK/flare/Dataset603_CDLPhantom"
    nnunet-cdl predict -i "$FLARE/imagesTs" -o "$WORK/reference_predictions" -m "$REFERENCE" -f 0 \
        --record "$WORK/reference_records"
    python - "$WORK/reference_records" <<'PY'
import json, pathlib, sys
records = [json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json"))]
windows = [r["windows"] for r in records if "windows" in r]
run, skipped = sum(w["run"] for w in windows), sum(w["skipped"] for w in windows)
print(f"center-first tiling: {run} windows run, {skipped} skipped ({100 * skipped / max(run + skipped, 1):.0f} %)")
PY

    step "9/9 FLARE evaluation of the reference model against the phantoms' truth"
    nnunet-cdl evaluate --truth "$FLARE/labelsTs" --pred "$WORK/reference_predictions" --out "$WORK/reference_evaluation"
else
    step "8/9 and 9/9 skipped: no reference model in $REFERENCE (make one: python scripts/train_reference.py)"
fi

step "made"
printf '%s\n' \
    "phantoms + noisy labels:   $SYNTH" \
    "consensus dataset:         $CONS (consensus.csv, curriculum.json, ds_histogram.png)" \
    "trained model:             $nnUNet_results/$(basename "$CONS")/${TRAINER}__nnUNetPlansLightUNet__3d_fullres/fold_0" \
    "predictions:               $WORK/predictions" \
    "evaluation:                $WORK/evaluation (metrics.csv, summary.json, metrics.png)" \
    "reference model:           $REFERENCE (MODEL_CARD.md; evaluation in $WORK/reference_evaluation when present)"
