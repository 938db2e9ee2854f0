"""The answers of one unfinished part, one JSON line each, as they arrive.

A part is written only when its whole batch is answered, so without this a kill loses
every answer of every batch in flight: with batches of 256 and 256 requests in flight,
issue 16's 290K drill redid 1,656 requests (6.5 batches). With it, a re-run asks again
only for the requests that were in flight when the run died.

Lines are appended and flushed one at a time; a kill can tear only the last one, which
the reader drops. The journal is named after its part (so after every option that shapes
the answers) and is removed once the part is on disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from scot_data.triplets.client import Completion

COMPLETION_FIELDS = {"text", "finish_reason", "prompt_tokens", "completion_tokens", "attempts"}


def read_journal(path: Path) -> dict[str, dict[str, Any]]:
    """Caption id -> its journalled answer; a torn or garbled line (a kill mid-write) is dropped."""
    if not path.exists():
        return {}
    answers = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if _well_formed(record):
            answers[record["caption_id"]] = record
    return answers


def _well_formed(record: Any) -> bool:
    if not isinstance(record, dict) or not isinstance(record.get("caption_id"), str):
        return False
    return "refused" in record or COMPLETION_FIELDS <= record.keys()


def completion_record(caption_id: str, completion: Completion) -> dict[str, Any]:
    return {
        "caption_id": caption_id,
        "text": completion.text,
        "finish_reason": completion.finish_reason,
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "attempts": completion.attempts,
    }


def refusal_record(caption_id: str, reason: str) -> dict[str, Any]:
    return {"caption_id": caption_id, "refused": reason}


def as_completion(record: dict[str, Any]) -> Completion:
    return Completion(
        record["text"], record["finish_reason"], record["prompt_tokens"], record["completion_tokens"],
        record["attempts"],
    )  # fmt: skip


class AnswerJournal:
    """Appends answers to ``path``; opened lazily, so a batch answered wholly from an earlier
    journal (or not at all) writes nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def append(self, record: dict[str, Any]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = self.path.exists() and self.path.stat().st_size > 0 and not self.path.read_bytes().endswith(b"\n")
            self._file = self.path.open("a", encoding="utf-8")
            if torn:  # end a line a kill cut short, so the next record starts a line of its own
                self._file.write("\n")
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
