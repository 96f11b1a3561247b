"""The run directory: the run's settings and one JSON line per finished unit of work, so a killed run resumes.

    OUT/run.json       the settings of the run (a resume with other settings is refused)
    OUT/records.jsonl  one record per finished unit (a profile step, a judgment), appended and flushed

A unit is written only when it is finished, with one `write` of one line, so a kill loses at most the
units in flight. A last line cut off by the kill is dropped on resume (and its unit redone); a bad line
anywhere else means the file was edited or corrupted, and is an error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import msgspec

from prefstream.eval.data import EvalInputError


class ProfileRecord(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="profile"):
    """The summary of one case after one step of one profile method (`step` 0: the full-history variant)."""

    method: str
    case: int
    step: int
    summary: str | None  # what a reader sees after this step (the previous summary if the update failed)
    status: Literal["ok", "failed", "no_evidence"]
    failure: str | None = None  # the backend's failure reason
    summary_tokens: int = 0
    dropped: int = 0  # triples dropped to fit the prompt budget (the authors' keep-the-recent-half rule)


class JudgmentRecord(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="judgment"):
    """One downstream answer to one selection prompt."""

    method: str  # e.g. none, raw-history, extractive/full, vllm/stream
    case: int
    step: int
    probe: str  # "target", or "early-N" (the N-th probe pair from early history)
    status: Literal["ok", "both", "neither", "malformed", "error"]
    correct: bool
    choice: str | None = None
    answer: str = ""  # the first 200 characters of the raw answer, for inspection


Record = ProfileRecord | JudgmentRecord
_decoder = msgspec.json.Decoder(Record)
_encoder = msgspec.json.Encoder()


def profile_key(method: str, case: int, step: int) -> tuple[str, str, int, int]:
    return ("profile", method, case, step)


def judgment_key(method: str, case: int, step: int, probe: str) -> tuple[str, str, int, int, str]:
    return ("judgment", method, case, step, probe)


def key_of(record: Record) -> tuple[object, ...]:
    if isinstance(record, ProfileRecord):
        return profile_key(record.method, record.case, record.step)
    return judgment_key(record.method, record.case, record.step, record.probe)


class RunDir:
    """An output directory: its settings, its finished records, and an append handle."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[tuple[object, ...], Record] = {}
        self._fh: int | None = None

    @property
    def records_path(self) -> Path:
        return self.path / "records.jsonl"

    def open(self, settings: bytes, *, restart: bool) -> int:
        """Create or resume the run; returns how many finished units were found."""
        self.path.mkdir(parents=True, exist_ok=True)
        run_json = self.path / "run.json"
        if restart:
            for p in (run_json, self.records_path):
                p.unlink(missing_ok=True)
        if run_json.exists():
            if run_json.read_bytes() != settings:
                raise EvalInputError(
                    f"{self.path} holds a run with other settings (see its run.json): "
                    "pass --restart to discard it, or choose another --out"
                )
        else:
            run_json.write_bytes(settings)
        self.load()
        self._fh = os.open(self.records_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return len(self.records)

    def load(self) -> None:
        """Read the finished records (dropping a last line cut off by a kill)."""
        if not self.records_path.exists():
            return
        raw = self.records_path.read_bytes()
        lines = raw.split(b"\n")
        good_end = 0
        for i, line in enumerate(lines):
            if not line.strip():
                good_end += len(line) + 1
                continue
            try:
                record = _decoder.decode(line)
            except msgspec.DecodeError:
                if i == len(lines) - 1:  # the last line, cut off by a kill: redo its unit
                    break
                raise EvalInputError(f"{self.records_path}:{i + 1}: not a record; the file was edited or corrupted")
            self.records[key_of(record)] = record
            good_end += len(line) + 1
        if good_end < len(raw):
            with open(self.records_path, "r+b") as fh:
                fh.truncate(min(good_end, len(raw)))

    def add(self, record: Record) -> None:
        """Append one finished unit (one write of one line: a kill cannot interleave two)."""
        assert self._fh is not None
        os.write(self._fh, _encoder.encode(record) + b"\n")
        self.records[key_of(record)] = record

    def close(self) -> None:
        if self._fh is not None:
            os.close(self._fh)
            self._fh = None
