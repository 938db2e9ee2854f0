#!/usr/bin/env bash
# The training sets of pipelines/ablations/clipart.yaml, built from a finished `make demo`
# (shards/demo). Every step skips what is already finished, so a re-run resumes; the image
# tower runs once per image (later caches adopt earlier ones' rows with --reuse).
set -euo pipefail
SCOT=${SCOT:-.venv/bin/scot}
D=shards/demo
NEW=lit-mini@$D/lit-mini-scenes/heads.safetensors
OLD=lit-mini@$D/fit-lit/heads.safetensors
PORT=${SCOT_LLM_PORT:-8011}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# Scenes of training objects: one template edit each; four each; one each with targets rendered.
$SCOT scenes --captions $D/captions --out $D/scenes --count 4000 --no-progress
$SCOT scenes --captions $D/captions --out $D/scenes-x4 --count 4000 --edits-per-scene 4 --no-progress
$SCOT scenes --captions $D/captions --out $D/scenes-rt --count 4000 --render-targets --no-progress

# The second lit-mini: heads fitted on single objects + scenes. A finished fit is kept as it
# is: a refit is not bit-identical and would invalidate every cache and Combiner below.
if [ ! -f $D/lit-mini-scenes/manifest.json ]; then
  $SCOT encoder fit-lit --captions $D/captions --captions $D/scenes/captions --out $D/lit-mini-scenes --no-progress
fi

# Embedding caches (old and new encoder over the scenes; the others adopt their rows).
$SCOT embed --captions $D/scenes/captions --triplets $D/scenes/triplets --encoder "$OLD" --out $D/scenes/embeddings-old --no-progress
$SCOT embed --captions $D/scenes/captions --triplets $D/scenes/triplets --encoder "$NEW" --out $D/scenes/embeddings-new --no-progress
$SCOT embed --captions $D/scenes-x4/captions --triplets $D/scenes-x4/triplets --encoder "$NEW" \
  --out $D/scenes-x4/embeddings-new --reuse $D/scenes/embeddings-new --no-progress
$SCOT embed --captions $D/scenes-rt/captions --triplets $D/scenes-rt/triplets --encoder "$NEW" \
  --out $D/scenes-rt/embeddings-new --reuse $D/scenes/embeddings-new --no-progress

# The embedded LLM (SmolLM2 on vLLM) on the scene captions with the scene prompt, its
# filtered set, and its mix with the 16k template set.
if [ ! -f $D/scenes/triplets-llm/manifest.json ]; then
  $SCOT llm serve --port "$PORT"
  trap '$SCOT llm stop --port "$PORT"' EXIT
  $SCOT triplets generate --captions $D/scenes/captions --out $D/scenes/triplets-llm \
    --endpoint "http://127.0.0.1:$PORT/v1" --model smollm2-135m-instruct \
    --prompt pipelines/prompts/scenes-v1.yaml --concurrency 16 --no-progress
fi
$SCOT embed --captions $D/scenes/captions --triplets $D/scenes/triplets-llm --encoder "$NEW" \
  --out $D/scenes/embeddings-llm --reuse $D/scenes/embeddings-new --no-progress
$SCOT triplets filter --triplets $D/scenes/triplets-llm --out $D/scenes/triplets-llm-filtered \
  --embeddings $D/scenes/embeddings-llm --prompt pipelines/prompts/scenes-v1.yaml
# (the 4k template + filtered LLM mix is a `mix:` variant of the ablation file; the cache above
# holds both sources' texts)
$SCOT mix --source $D/scenes-x4/triplets:0.866 --source $D/scenes/triplets-llm:0.134 \
  --out $D/scenes-x4/triplets-with-llm
$SCOT embed --captions $D/scenes-x4/captions --triplets $D/scenes-x4/triplets-with-llm --encoder "$NEW" \
  --out $D/scenes-x4/embeddings-with-llm --reuse $D/scenes-x4/embeddings-new --reuse $D/scenes/embeddings-llm --no-progress

# The LLM's single-object triplets of the demo, filtered (the demo's own cache scores them).
$SCOT triplets filter --triplets $D/triplets --out $D/triplets-filtered --embeddings $D/embed
