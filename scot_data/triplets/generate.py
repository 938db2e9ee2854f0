"""The triplet stage: captions -> triplets, part by part, resumable, LLM or template.

Captions are cut into batches; each batch's part is named by its caption ids and every
option that shapes the answers (backend, prompt version and text, model, sampling,
response format, seed, checks), so a finished part is reused by any later run that would
produce the same thing and never by one that would not. Each part is three files written
atomically in ``parts/``: rejects, stats, then triplets (the last one marks it done).
Until then its answers are journalled one by one as they arrive (``journal.py``), so a
killed run loses at most the requests in flight. ``triplets.parquet``,
``rejects.parquet`` and ``stats.json`` are then assembled (dropping duplicate triplets)
and ``manifest.json`` is written last. Parts stay: they are the LLM's answers, the
expensive thing to redo.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from rich.progress import Progress

from scot_data import ids
from scot_data.atomic import atomic_write_json, atomic_write_parquet
from scot_data.errors import ScotInputError, StageIncomplete
from scot_data.manifest import (
    InputRef,
    fingerprint_input,
    finished_manifest,
    finished_summary,
    is_complete,
    stage_fingerprint,
    write_manifest,
)
from scot_data.outdir import writes_folder
from scot_data.triplets.client import ChatClient, RequestFailed, RequestRefused
from scot_data.triplets.config import TripletsConfig
from scot_data.triplets.journal import (
    AnswerJournal,
    as_completion,
    completion_record,
    read_journal,
    refusal_record,
)
from scot_data.triplets.prompts import PromptTemplate, load_prompt, prompt_file
from scot_data.triplets.records import (
    PARQUET_OPTIONS,
    REJECTS_FILE,
    REJECTS_SCHEMA,
    STAGE,
    STATS_FILE,
    TRIPLETS_FILE,
    TRIPLETS_SCHEMA,
    CaptionIn,
    Triplet,
    TripletReject,
    to_table,
)
from scot_data.triplets.template import corpus_objects, template_edit
from scot_data.triplets.validate import AnswerRejected, check_answer, edit_label, normalise, parse_answer

PARTS_DIR = "parts"
SUBFOLDERS = (PARTS_DIR,)
# Options that change speed or robustness, never the answers.
RUNTIME_ONLY_OPTIONS = {"endpoints", "serve", "concurrency", "timeout", "max_attempts", "retry_backoff", "batch_size"}


@dataclass
class PartStats:
    """Counts of one part, stored beside it as ``<part>.stats.json``."""

    captions: int = 0
    accepted: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


@dataclass
class TripletSummary:
    """What one run did; printed by the CLI and stored as ``stats.json``."""

    out_dir: str
    backend: str = ""
    captions: int = 0
    triplets: int = 0
    rejects: int = 0
    duplicates: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    edit_types: dict[str, int] = field(default_factory=dict)
    parts: int = 0
    parts_reused: int = 0
    requests: int = 0
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    requests_per_second: float = 0.0
    triplets_per_second: float = 0.0
    skipped: bool = False


@dataclass(frozen=True)
class Batch:
    """Captions of one part and where its files go."""

    key: str
    captions: tuple[CaptionIn, ...]
    parts_dir: Path

    def path(self, kind: str) -> Path:
        suffix = {"stats": "stats.json", "answers": "answers.jsonl"}.get(kind, f"{kind}.parquet")
        return self.parts_dir / f"part-{self.key}.{suffix}"

    def done(self) -> bool:
        return all(self.path(k).exists() for k in ("rejects", "stats", "triplets"))


@dataclass
class Run:
    """Everything a batch needs besides its captions."""

    cfg: TripletsConfig
    prompt: PromptTemplate | None
    run_key: str
    model_label: str
    prompt_version: str
    objects: list[str] = field(default_factory=list)


def load_captions(captions_dir: Path) -> list[CaptionIn]:
    """Rows of a finished caption stage (one without a manifest is refused)."""
    finished_manifest(captions_dir, "captions", "--captions")
    table = pq.read_table(captions_dir / "captions.parquet", columns=["caption_id", "image_id", "caption"])
    return [CaptionIn(**row) for row in table.to_pylist()]


def sample(captions: list[CaptionIn], limit: int | None, seed: int) -> list[CaptionIn]:
    """A seeded sample in table order (a larger limit keeps a smaller one's captions)."""
    if limit is None or limit >= len(captions):
        return captions
    keep = set(sorted((c.caption_id for c in captions), key=lambda cid: ids.sample_rank(seed, cid))[:limit])
    return [c for c in captions if c.caption_id in keep]


def stage_config(cfg: TripletsConfig, prompt: PromptTemplate | None) -> dict[str, Any]:
    """The options that shape the answers, with the prompt's exact text hash in place of the
    name or path it was given by (``v1`` and ``pipelines/prompts/v1.yaml`` share their parts)."""
    config = cfg.model_dump(mode="json", exclude=RUNTIME_ONLY_OPTIONS | {"prompt"})
    backend = cfg.backend_entry
    if backend.llm:
        config["prompt_sha256"] = prompt.sha256 if prompt else None
    else:
        keys = backend.fingerprint_keys or tuple(config)
        config = {k: config[k] for k in keys} | {f"{backend.name}_version": backend.version}
    return config


def make_run(cfg: TripletsConfig) -> Run:
    backend = cfg.backend_entry
    prompt = load_prompt(cfg.prompt) if backend.llm else None
    config = stage_config(cfg, prompt)
    run_key = ids.stable_id(json.dumps({k: v for k, v in config.items() if k != "limit"}, sort_keys=True))
    if prompt is None:
        return Run(cfg, None, run_key, backend.name, backend.version or backend.name)
    return Run(cfg, prompt, run_key, cfg.model, prompt.version)


def plan(captions: list[CaptionIn], run: Run, parts_dir: Path) -> list[Batch]:
    size = run.cfg.batch_size
    batches = []
    for start in range(0, len(captions), size):
        chunk = tuple(captions[start : start + size])
        key = ids.stable_id(run.run_key, *(c.caption_id for c in chunk))
        batches.append(Batch(key, chunk, parts_dir))
    return batches


def request_seed(seed: int, caption_id: str) -> int:
    """A per-caption sampling seed: the same caption gets the same draw on every run."""
    return int(ids.stable_id("request-seed", str(seed), caption_id)[:8], 16)


def _triplet(run: Run, caption: CaptionIn, modification: str, modified: str, edit_type: str) -> Triplet:
    return Triplet(
        triplet_id=ids.stable_id("triplet", run.run_key, caption.caption_id),
        caption_id=caption.caption_id,
        image_id=caption.image_id,
        caption=caption.caption,
        modification=modification,
        modified_caption=modified,
        edit_type=edit_type,
        llm_model=run.model_label,
        prompt_version=run.prompt_version,
        seed=run.cfg.seed,
    )


def _reject(run: Run, caption: CaptionIn, raw: str, reason: str) -> TripletReject:
    return TripletReject(caption.caption_id, caption.caption, raw, reason, run.model_label, run.prompt_version)


async def _ask(client: ChatClient, run: Run, caption: CaptionIn) -> dict[str, Any]:
    """The server's answer to one caption as a journal record (RequestFailed propagates)."""
    assert run.prompt is not None
    sampling = run.cfg.sampling
    try:
        completion = await client.complete(
            run.prompt.messages(caption.caption),
            response_format=run.prompt.response_format(run.cfg.response_format),
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            seed=request_seed(run.cfg.seed, caption.caption_id),
        )
    except RequestRefused as exc:
        return refusal_record(caption.caption_id, f"request refused: {exc}")
    return completion_record(caption.caption_id, completion)


def _outcome(run: Run, caption: CaptionIn, record: dict[str, Any], stats: PartStats) -> Triplet | TripletReject:
    """Check one answer, fresh or journalled, counting what it cost."""
    if "refused" in record:
        return _reject(run, caption, "", record["refused"])
    completion = as_completion(record)
    stats.requests += 1
    stats.attempts += completion.attempts
    stats.prompt_tokens += completion.prompt_tokens
    stats.completion_tokens += completion.completion_tokens
    try:
        fields = parse_answer(completion.text, truncated=completion.finish_reason == "length")
        check_answer(caption.caption, fields, run.cfg.max_modification_words, run.cfg.max_caption_growth_words)
    except AnswerRejected as exc:
        return _reject(run, caption, completion.text, str(exc))
    return _triplet(run, caption, fields["modification"], fields["modified_caption"], edit_label(fields["edit_type"]))


async def answer_batch(
    client: ChatClient, run: Run, batch: Batch, on_answer: Callable[[], None] | None = None
) -> tuple[list, list, PartStats]:
    """All captions of a batch concurrently; raises RequestFailed if any went unanswered.

    Answers already in the part's journal (from a killed or failed run) are not asked again;
    new ones are journalled as they arrive. ``on_answer`` is called as each caption's
    request ends, answered or not (at once for a journalled one)."""
    stats = PartStats(captions=len(batch.captions))
    journalled = read_journal(batch.path("answers"))
    journal = AnswerJournal(batch.path("answers"))

    async def answer(caption: CaptionIn) -> Triplet | TripletReject:
        record = journalled.get(caption.caption_id)
        try:
            if record is None:
                record = await _ask(client, run, caption)
                journal.append(record)
        finally:
            if on_answer is not None:
                on_answer()
        return _outcome(run, caption, record, stats)

    try:
        results = await asyncio.gather(*(answer(c) for c in batch.captions))
    finally:
        journal.close()
    return _split(results, stats)


def template_batch(run: Run, batch: Batch) -> tuple[list, list, PartStats]:
    stats = PartStats(captions=len(batch.captions))
    results = []
    for caption in batch.captions:
        modification, modified, edit_type = template_edit(caption, run.cfg.seed, run.objects)
        results.append(_triplet(run, caption, modification, modified, edit_type))
    return _split(results, stats)


def _split(results: list, stats: PartStats) -> tuple[list, list, PartStats]:
    triplets = [r for r in results if isinstance(r, Triplet)]
    rejects = [r for r in results if isinstance(r, TripletReject)]
    stats.accepted, stats.rejected = len(triplets), len(rejects)
    stats.reasons = dict(Counter(_reason_label(r.reason) for r in rejects).most_common())
    return triplets, rejects, stats


def _reason_label(reason: str) -> str:
    return reason.split(":")[0]


def write_part(batch: Batch, triplets: list, rejects: list, stats: PartStats) -> None:
    """Rejects, then stats, then triplets: the triplets file marks the part done and its
    answer journal has served its purpose."""
    atomic_write_parquet(batch.path("rejects"), to_table(rejects, REJECTS_SCHEMA), **PARQUET_OPTIONS)
    atomic_write_json(batch.path("stats"), asdict(stats))
    atomic_write_parquet(batch.path("triplets"), to_table(triplets, TRIPLETS_SCHEMA), **PARQUET_OPTIONS)
    batch.path("answers").unlink(missing_ok=True)


def run_batch(run: Run, batch: Batch) -> PartStats:
    """Produce and write one part on its own (used by the Prefect flow's mapped task)."""
    if batch.done():
        return PartStats(**json.loads(batch.path("stats").read_text()))
    started = time.perf_counter()
    if run.prompt is None:
        triplets, rejects, stats = template_batch(run, batch)
    else:
        triplets, rejects, stats = asyncio.run(_one_batch(run, batch))
    stats.seconds = round(time.perf_counter() - started, 3)
    write_part(batch, triplets, rejects, stats)
    return stats


async def _one_batch(run: Run, batch: Batch) -> tuple[list, list, PartStats]:
    client = _client(run.cfg)
    try:
        return await answer_batch(client, run, batch)
    finally:
        await client.close()


def _client(cfg: TripletsConfig) -> ChatClient:
    return ChatClient(cfg.endpoints, cfg.model, cfg.concurrency, cfg.timeout, cfg.max_attempts, backoff=cfg.retry_backoff)


async def _run_llm(run: Run, todo: list[Batch], on_done) -> list[str]:
    """Answer batches so the servers always have ``concurrency`` requests to work on.

    A batch starts whenever fewer than ``concurrency + batch_size`` requests of the batches
    already started are unanswered, however many batches that takes: a batch that waits on
    one slow request (a timeout, then its retries) holds one request's place, not a whole
    batch's. (With a fixed window of batches, issue 16's rehearsal found most batches of 256
    holding a request that timed out, at a 0.5% timeout rate, and each one halved the
    stage's throughput for the whole timeout.) Parts are written as batches finish.

    Once a batch goes unanswered (every retry failed) no further batch starts: against a
    dead server each one would wait out its own retries and ever longer cool-downs (4.5
    minutes for 8 batches of 4 in tests/test_drills.py) before the stage could say so.
    """
    client = _client(run.cfg)
    room_below = run.cfg.concurrency + run.cfg.batch_size
    unanswered = 0
    room = asyncio.Event()
    failures: list[str] = []

    def answered() -> None:
        nonlocal unanswered
        unanswered -= 1
        if unanswered < room_below:
            room.set()

    async def one(batch: Batch) -> tuple[Batch, Any]:
        started = time.perf_counter()
        try:
            triplets, rejects, stats = await answer_batch(client, run, batch, answered)
        except RequestFailed as exc:
            return batch, exc
        stats.seconds = round(time.perf_counter() - started, 3)
        return batch, (triplets, rejects, stats)

    pending: set[asyncio.Task] = set()
    queue = list(reversed(todo))
    try:
        while True:
            while queue and not failures and unanswered < room_below:
                batch = queue.pop()
                pending.add(asyncio.create_task(one(batch)))
                unanswered += len(batch.captions)
            if not pending:
                break
            room.clear()
            waiter = asyncio.create_task(room.wait()) if queue and not failures else None
            wake = pending if waiter is None else pending | {waiter}
            finished, _ = await asyncio.wait(wake, return_when=asyncio.FIRST_COMPLETED)
            if waiter is not None:
                waiter.cancel()
            for task in finished & pending:
                pending.discard(task)
                batch, result = task.result()
                if isinstance(result, Exception):
                    failures.append(f"part {batch.key}: {result}")
                else:
                    write_part(batch, *result)
                on_done(batch)
    finally:
        await client.close()
    return failures + [f"part {batch.key}: not started (an earlier batch went unanswered)" for batch in reversed(queue)]


def check_endpoints(cfg: TripletsConfig) -> None:
    """Fail before any work when no endpoint answers or none serves the model."""
    import httpx

    problems = []
    for url in cfg.endpoints:
        try:
            response = httpx.get(url.rstrip("/") + "/models", timeout=10)
            response.raise_for_status()
            served = [m["id"] for m in response.json().get("data", [])]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            problems.append(f"{url}: {type(exc).__name__}: {exc}")
            continue
        if cfg.model in served:
            return
        problems.append(f"{url}: does not serve {cfg.model!r} (serves {', '.join(served) or 'nothing'})")
    raise ScotInputError("no usable LLM endpoint: " + "; ".join(problems))


def _iter_rows(paths: list[Path], columns: list[str] | None = None) -> Iterator[dict]:
    for path in paths:
        yield from pq.read_table(path, columns=columns).to_pylist()


def assemble(batches: list[Batch], out: Path, summary: TripletSummary) -> None:
    """Merge parts into the final tables, dropping duplicate triplets (kept as rejects)."""
    seen: set[tuple[str, str, str]] = set()
    triplets, duplicates = [], []
    for row in _iter_rows([b.path("triplets") for b in batches]):
        key = (row["image_id"], normalise(row["modification"]), normalise(row["modified_caption"]))
        if key in seen:
            duplicates.append(
                TripletReject(row["caption_id"], row["caption"], json.dumps(row), "duplicate triplet",
                              row["llm_model"], row["prompt_version"])
            )  # fmt: skip
            continue
        seen.add(key)
        triplets.append(Triplet(**row))
    rejects = [TripletReject(**r) for r in _iter_rows([b.path("rejects") for b in batches])] + duplicates
    atomic_write_parquet(out / TRIPLETS_FILE, to_table(triplets, TRIPLETS_SCHEMA), **PARQUET_OPTIONS)
    atomic_write_parquet(out / REJECTS_FILE, to_table(rejects, REJECTS_SCHEMA), **PARQUET_OPTIONS)
    summary.triplets, summary.rejects, summary.duplicates = len(triplets), len(rejects), len(duplicates)
    summary.reasons = dict(Counter(_reason_label(r.reason) for r in rejects).most_common())
    summary.edit_types = dict(Counter(t.edit_type for t in triplets).most_common())
    for batch in batches:
        part = json.loads(batch.path("stats").read_text())
        for name in ("requests", "attempts", "prompt_tokens", "completion_tokens"):
            setattr(summary, name, getattr(summary, name) + part[name])


def stage_inputs(cfg: TripletsConfig, captions_dir: Path) -> list[InputRef]:
    inputs = [fingerprint_input(captions_dir / "captions.parquet")]
    if cfg.backend_entry.llm:
        inputs.append(fingerprint_input(prompt_file(cfg.prompt)))
    return inputs


@dataclass
class Prepared:
    """A stage ready to run: its batches, what is left, and what the manifest will say."""

    run: Run
    batches: list[Batch]
    out: Path
    config: dict[str, Any]
    inputs: list[InputRef]
    summary: TripletSummary
    started: float

    @property
    def todo(self) -> list[Batch]:
        return [b for b in self.batches if not b.done()]


def stage_complete(cfg: TripletsConfig, captions_dir: str | Path, out_dir: str | Path) -> bool:
    """Whether ``out_dir`` already holds this stage for these captions and options
    (cheap: no captions are read, no endpoint is contacted)."""
    run = make_run(cfg)
    fingerprint = stage_fingerprint(STAGE, stage_config(cfg, run.prompt), stage_inputs(cfg, Path(captions_dir)))
    return is_complete(out_dir, STAGE, fingerprint)


def prepare(cfg: TripletsConfig, captions_dir: str | Path, out_dir: str | Path) -> Prepared | TripletSummary:
    """Plan the run, or return the summary of a finished one with the same inputs and options.

    Endpoints are checked here, before any work, when there is LLM work left to do.
    """
    started = time.perf_counter()
    captions_path, out = Path(captions_dir), Path(out_dir)
    if stage_complete(cfg, captions_path, out):
        return finished_summary(out, TripletSummary)
    captions = sample(load_captions(captions_path), cfg.limit, cfg.seed)
    run = make_run(cfg)
    inputs = stage_inputs(cfg, captions_path)
    config = stage_config(cfg, run.prompt)
    (out / "manifest.json").unlink(missing_ok=True)
    if not cfg.backend_entry.llm:
        run.objects = corpus_objects(captions)
    batches = plan(captions, run, out / PARTS_DIR)
    summary = TripletSummary(out_dir=str(out), backend=cfg.backend, captions=len(captions), parts=len(batches))
    prepared = Prepared(run, batches, out, config, inputs, summary, started)
    summary.parts_reused = len(batches) - len(prepared.todo)
    if prepared.todo and cfg.backend_entry.llm:
        check_endpoints(cfg)
    return prepared


@writes_folder(STAGE, SUBFOLDERS)
def generate_triplets(
    cfg: TripletsConfig,
    captions_dir: str | Path,
    out_dir: str | Path,
    show_progress: bool = True,
    force: bool = False,
) -> TripletSummary:
    """Run the stage; a finished stage with the same inputs and options is skipped."""
    prepared = prepare(cfg, captions_dir, out_dir)
    if isinstance(prepared, TripletSummary):
        return prepared
    run, todo = prepared.run, prepared.todo
    failures: list[str] = []
    with Progress(disable=not show_progress) as progress:
        total = prepared.summary.captions
        task = progress.add_task(f"triplets ({cfg.backend})", total=total,
                                 completed=total - sum(len(b.captions) for b in todo))  # fmt: skip
        if run.prompt is None:
            for batch in todo:
                run_batch(run, batch)
                progress.advance(task, len(batch.captions))
        else:
            failures = asyncio.run(_run_llm(run, todo, lambda b: progress.advance(task, len(b.captions))))
    if failures:
        raise StageIncomplete(
            f"{len(failures)} of {len(prepared.batches)} batches unanswered (finished parts kept; run again to "
            f"retry): {failures[0]}"
        )
    return finish(prepared)


def finish(prepared: Prepared) -> TripletSummary:
    """Assemble the final tables, then stats, then the manifest (last)."""
    summary, out, batches = prepared.summary, prepared.out, prepared.batches
    assemble(batches, out, summary)
    summary.seconds = round(time.perf_counter() - prepared.started, 2)
    if summary.seconds > 0:
        summary.requests_per_second = round(summary.requests / summary.seconds, 2)
        summary.triplets_per_second = round(summary.triplets / summary.seconds, 2)
    atomic_write_json(out / STATS_FILE, asdict(summary))
    write_manifest(
        out,
        STAGE,
        prepared.config,
        prepared.inputs,
        {TRIPLETS_FILE: summary.triplets, REJECTS_FILE: summary.rejects, STATS_FILE: None},
        extra={"stats": asdict(summary), "parts": sorted(b.path("triplets").name for b in batches)},
    )
    return summary
