#!/usr/bin/env bash
# The training sets of pipelines/ablations/clipart.yaml, built under shards/ablation/ from a
# finished `make demo`'s captions (shards/demo/captions: the demo's own scenes, fit and
# triplets are left as they are). Every step skips what is already finished, so a re-run
# resumes; the image tower runs once per image (later caches adopt earlier ones' rows with --reuse).
set -euo pipefail
SCOT=${SCOT:-.venv/bin/scot}
D=shards/demo
A=shards/ablation
NEW=lit-mini@$A/fit-lit-scenes/heads.safetensors
OLD=lit-mini@$A/fit-lit-objects/heads.safetensors
PORT=${SCOT_LLM_PORT:-8011}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# Scenes of training objects: one template edit each; four each; one each with targets rendered.
$SCOT scenes --captions $D/captions --out $A/scenes --count 4000 --no-progress
$SCOT scenes --captions $D/captions --out $A/scenes-x4 --count 4000 --edits-per-scene 4 --no-progress
$SCOT scenes --captions $D/captions --out $A/scenes-rt --count 4000 --render-targets --no-progress

# Two lit-mini fits: heads on single objects only ("old"), and on single objects + scenes
# ("new"). A finished fit is kept as it is: a refit is not bit-identical and would
# invalidate every cache and Combiner below.
if [ ! -f $A/fit-lit-objects/manifest.json ]; then
  $SCOT fit-lit --captions $D/captions --out $A/fit-lit-objects --no-progress
fi
if [ ! -f $A/fit-lit-scenes/manifest.json ]; then
  $SCOT fit-lit --captions $D/captions --captions $A/scenes/captions --out $A/fit-lit-scenes --no-progress
fi

# Embedding caches (old and new encoder over the scenes; the others adopt their rows).
$SCOT embed --captions $A/scenes/captions --triplets $A/scenes/triplets --encoder "$OLD" --out $A/scenes/embeddings-old --no-progress
$SCOT embed --captions $A/scenes/captions --triplets $A/scenes/triplets --encoder "$NEW" --out $A/scenes/embeddings-new --no-progress
$SCOT embed --captions $A/scenes-x4/captions --triplets $A/scenes-x4/triplets --encoder "$NEW" \
  --out $A/scenes-x4/embeddings-new --reuse $A/scenes/embeddings-new --no-progress
$SCOT embed --captions $A/scenes-rt/captions --triplets $A/scenes-rt/triplets --encoder "$NEW" \
  --out $A/scenes-rt/embeddings-new --reuse $A/scenes/embeddings-new --no-progress

# The embedded LLM (SmolLM2 on vLLM): the scene captions with the scene prompt, and 2,000
# single-object captions with the default prompt.
if [ ! -f $A/scenes/triplets-llm/manifest.json ] || [ ! -f $A/triplets-objects/manifest.json ]; then
  $SCOT llm serve --port "$PORT"
  trap '$SCOT llm stop --port "$PORT"' EXIT
  $SCOT triplets generate --captions $A/scenes/captions --out $A/scenes/triplets-llm \
    --endpoint "http://127.0.0.1:$PORT/v1" --model smollm2-135m-instruct \
    --prompt pipelines/prompts/scenes-v1.yaml --concurrency 16 --no-progress
  $SCOT triplets generate --captions $D/captions --out $A/triplets-objects \
    --endpoint "http://127.0.0.1:$PORT/v1" --model smollm2-135m-instruct --limit 2000 \
    --concurrency 16 --no-progress
fi
$SCOT embed --captions $A/scenes/captions --triplets $A/scenes/triplets-llm --encoder "$NEW" \
  --out $A/scenes/embeddings-llm --reuse $A/scenes/embeddings-new --no-progress
$SCOT triplets filter --triplets $A/scenes/triplets-llm --out $A/scenes/triplets-llm-filtered \
  --embeddings $A/scenes/embeddings-llm --prompt pipelines/prompts/scenes-v1.yaml
# (the 4k template + filtered LLM mix is a `mix:` variant of the ablation file; the cache above
# holds both sources' texts)
$SCOT mix --source $A/scenes-x4/triplets:0.866 --source $A/scenes/triplets-llm:0.134 \
  --out $A/scenes-x4/triplets-with-llm
$SCOT embed --captions $A/scenes-x4/captions --triplets $A/scenes-x4/triplets-with-llm --encoder "$NEW" \
  --out $A/scenes-x4/embeddings-with-llm --reuse $A/scenes-x4/embeddings-new --reuse $A/scenes/embeddings-llm --no-progress

# The LLM's single-object triplets with the old fit, and their filtered set.
$SCOT embed --captions $D/captions --triplets $A/triplets-objects --encoder "$OLD" --out $A/embed-objects --no-progress
$SCOT triplets filter --triplets $A/triplets-objects --out $A/triplets-objects-filtered --embeddings $A/embed-objects
