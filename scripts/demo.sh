#!/usr/bin/env bash
# The main job (`make demo`): three noisy labelers -> consensus -> curriculum training (short) -> fast CPU
# prediction -> FLARE evaluation, all on synthetic phantoms, with stock nnU-Net commands where users expect them.
# Everything lands in demo_work/ (override with DEMO_WORK=...). About 5-8 minutes on 2 CPU cores.
set -euo pipefail

WORK=${DEMO_WORK:-demo_work}
TRAINER=${DEMO_TRAINER:-nnUNetTrainerCDL_5epochs}
rm -rf "$WORK"
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
export nnUNet_raw="$WORK/nnUNet_raw" nnUNet_preprocessed="$WORK/nnUNet_preprocessed" nnUNet_results="$WORK/nnUNet_results"
export nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-1}
eval "$(nnunet-cdl env)"
step() { printf '\n=== %s ===\n' "$*"; }

step "1/7 synthetic abdominal CT phantoms with three noisy pseudo-labelers"
nnunet-cdl synth --out "$WORK/synth" --dataset-id 601 --cases 10 --test-cases 2 --preset small --seed 0 --sources 3
SYNTH="$WORK/synth/Dataset601_CDLPhantom"

step "2/7 label cleaning (stray values such as 14 or 255 -> 0)"
nnunet-cdl clean-labels --labels "$SYNTH/pseudolabels/source_1" --out "$WORK/source_1_clean" \
    --dataset-json "$SYNTH/dataset.json"

step "3/7 consensus: reliability scores pick each case's label, difficulty scores split easy/hard/erroneous"
nnunet-cdl consensus --images "$SYNTH/imagesTr" --labels "$SYNTH"/pseudolabels/* \
    --out "$nnUNet_raw" --dataset-id 602
CONS=$(ls -d "$nnUNet_raw"/Dataset602_*)
head -n 20 "$CONS/consensus.csv"

step "4/7 plan and preprocess with the light U-Net planner (nnUNetPlansLightUNet)"
nnunet-cdl plan -d 602 -c 3d_fullres -np 1

step "5/7 stock nnUNetv2_train with the easy-then-hard curriculum trainer ($TRAINER)"
nnUNetv2_train 602 3d_fullres 0 -tr "$TRAINER" -p nnUNetPlansLightUNet -device cpu

step "6/7 fast center-first CPU prediction of the test cases"
nnunet-cdl predict -i "$SYNTH/imagesTs" -o "$WORK/predictions" -d 602 -c 3d_fullres -f 0 \
    -tr "$TRAINER" -p nnUNetPlansLightUNet -device cpu --record "$WORK/prediction_records"

step "7/7 FLARE evaluation against the clean phantom labels"
nnunet-cdl evaluate --truth "$SYNTH/labelsTs" --pred "$WORK/predictions" --out "$WORK/evaluation"

step "made"
printf '%s\n' \
    "phantoms + noisy labels:   $SYNTH" \
    "consensus dataset:         $CONS (consensus.csv, curriculum.json, ds_histogram.png)" \
    "trained model:             $nnUNet_results/$(basename "$CONS")/${TRAINER}__nnUNetPlansLightUNet__3d_fullres/fold_0" \
    "predictions:               $WORK/predictions" \
    "evaluation:                $WORK/evaluation (metrics.csv, summary.json, metrics.png)"
