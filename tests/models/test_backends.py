"""Backends without an engine: the factory, the extractive baseline, the time box, the openai client's retries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import msgspec
import pytest

from model_helpers import engine_settings, request
from prefstream.models.backends import create_backend
from prefstream.models.backends.extractive import HEADER, ExtractiveBackend, fold, parse_profile
from prefstream.models.backends.openai import OpenAIBackend
from prefstream.models.errors import FailureReason
from prefstream.models.interface import PreferenceModel, UpdateFailure, UpdateRequest, UpdateSuccess
from prefstream.models.timebox import TimeBox
from prefstream.errors import ConfigError
from prefstream.settings import Settings
from prefstream.schemas.evidence import Evidence, Triple


def evidence(*pairs: tuple[str, str]) -> tuple[Evidence, ...]:
    return tuple(
        Evidence(event_id=f"e{i}", triples=(Triple(query="q", chosen=c, rejected=r),)) for i, (c, r) in enumerate(pairs)
    )


def test_backend_is_required() -> None:
    """Without PREFSTREAM_MODEL_BACKEND the factory refuses: there is no silent default."""
    with pytest.raises(ConfigError, match="PREFSTREAM_MODEL_BACKEND is required"):
        create_backend(Settings.from_env({}))


def test_factory_builds_the_extractive_backend_without_importing_vllm() -> None:
    """The extractive backend is built by name, and neither vLLM nor torch is imported for it."""
    code = (
        "import sys; from models.backends import create_backend; from prefstream.settings import Settings;"
        "b = create_backend(Settings.from_env({'PREFSTREAM_MODEL_BACKEND': 'extractive'}));"
        "print(b.name, 'vllm' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[2])
    assert out.stdout.split() == ["extractive", "False", "False"]


async def test_extractive_profile_counts_choices_most_frequent_first() -> None:
    """The baseline lists chosen and rejected items by frequency, carried across updates in the summary."""
    backend = ExtractiveBackend(max_items=5, max_summary_chars=2000, prompt_token_budget=100)
    assert isinstance(backend, PreferenceModel)
    first = UpdateRequest(request_id="a", user_id="u", epoch=0, base_version=0, previous_summary=None,
                          evidence=evidence(("Jazz\nlong abstract", "News"), ("Rock", "News")))
    out1 = await backend.update(first)
    assert isinstance(out1, UpdateSuccess)
    second = UpdateRequest(request_id="b", user_id="u", epoch=0, base_version=1, previous_summary=out1.summary,
                           evidence=evidence(("Rock", "Sports")))
    out2 = await backend.update(second)
    assert isinstance(out2, UpdateSuccess)
    assert out2.summary == "\n".join(
        [HEADER, "Chose:", "- Rock (x2)", "- Jazz (x1)", "Rejected:", "- News (x2)", "- Sports (x1)"]
    )
    assert parse_profile(out2.summary) == ({"Rock": 2, "Jazz": 1}, {"News": 2, "Sports": 1})


def test_extractive_skips_the_missing_side_placeholders() -> None:
    """"No negative sample." / "No positive sample." stand for a missing item: they are not listed as items."""
    from prefstream.schemas.evidence import NO_NEGATIVE, NO_POSITIVE

    profile = fold(None, evidence(("Dune", NO_NEGATIVE), (NO_POSITIVE, "Cats")), max_items=5)
    assert profile.splitlines()[1:] == ["Chose:", "- Dune (x1)", "Rejected:", "- Cats (x1)"]


def test_extractive_ignores_a_foreign_summary_and_is_deterministic() -> None:
    """A summary another backend wrote is not merged, and the same input always gives the same profile."""
    ev = evidence(("B", "x"), ("A", "y"), ("B", "y"))
    a = fold("The user likes jazz (an LLM summary).", ev, max_items=3)
    assert a == fold(None, ev, max_items=3)
    assert a.splitlines()[2:4] == ["- B (x2)", "- A (x1)"]


def test_time_box_follows_measured_latency() -> None:
    """The time box is overhead + max_tokens x measured per-token latency x factor, never below the floor."""
    box = TimeBox(start_overhead_s=10, initial_token_latency_s=0.05, safety_factor=2, floor_s=30)
    assert box.timeout_for(4096) == pytest.approx(10 + 4096 * 0.05 * 2)
    box.observe(latency_s=2.0, completion_tokens=100)  # 20 ms/token replaces the prior
    assert box.timeout_for(4096) == pytest.approx(10 + 4096 * 0.02 * 2)
    box.observe(latency_s=4.0, completion_tokens=100)  # EMA moves a fifth of the way to 40 ms
    assert box.token_latency_s == pytest.approx(0.024)
    box.observe(latency_s=5.0, completion_tokens=3)  # too few tokens to measure
    assert box.token_latency_s == pytest.approx(0.024)
    assert box.timeout_for(1) == 30


def openai_backend(tiny_model_dir: Path, handler) -> OpenAIBackend:
    settings = engine_settings(tiny_model_dir, PREFSTREAM_MODEL_BACKEND="openai", PREFSTREAM_MODEL="tiny",
                               PREFSTREAM_TOKENIZER=str(tiny_model_dir), PREFSTREAM_OPENAI_BACKOFF_S="0.001",
                               PREFSTREAM_OPENAI_RETRIES="2")
    return OpenAIBackend(settings, transport=httpx.MockTransport(handler))


def completion(text: str, finish: str = "stop") -> httpx.Response:
    """A streamed (SSE) completion as vLLM sends it: text chunks, the finish reason, then usage."""
    chunks = [
        {"choices": [{"index": 0, "text": text[:5], "finish_reason": None}]},
        {"choices": [{"index": 0, "text": text[5:], "finish_reason": finish}]},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 20}},
    ]
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return httpx.Response(200, content=body.encode(), headers={"content-type": "text/event-stream"})


async def test_openai_retries_5xx_then_succeeds(tiny_model_dir: Path) -> None:
    """503 answers are retried with backoff; the prompt goes as token ids to /v1/completions."""
    calls: list[dict] = []

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "tiny"}]})
        calls.append(json.loads(req.content))
        return httpx.Response(503) if len(calls) < 3 else completion("<think>\nx\n</think>\n\nLikes jazz.")

    backend = openai_backend(tiny_model_dir, handler)
    await backend.start()
    out = await backend.update(request(1))
    await backend.aclose()
    assert isinstance(out, UpdateSuccess) and out.summary == "Likes jazz."
    assert len(calls) == 3 and all(isinstance(t, int) for t in calls[0]["prompt"]) and calls[0]["stream"]
    assert (calls[0]["temperature"], calls[0]["top_p"], calls[0]["top_k"]) == (0.6, 0.95, 20)


@pytest.mark.parametrize(
    ("status", "reason", "retryable"),
    [(400, FailureReason.ENGINE_ERROR, False), (503, FailureReason.ENGINE_ERROR, True)],
)
async def test_openai_failures_have_reasons(tiny_model_dir: Path, status: int, reason: FailureReason,
                                            retryable: bool) -> None:
    """A 4xx fails at once (not retryable); a 5xx that persists through the retries fails retryable."""
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "tiny"}]})
        return httpx.Response(status, json={"error": {"type": "BadRequestError", "message": "secret prompt"}})

    backend = openai_backend(tiny_model_dir, handler)
    await backend.start()
    out = await backend.update(request(1))
    await backend.aclose()
    assert isinstance(out, UpdateFailure) and out.reason == reason and out.retryable is retryable
    assert "secret prompt" not in out.message


async def test_openai_unreachable_server_is_backend_unavailable(tiny_model_dir: Path) -> None:
    """Transport errors on every attempt give a retryable `backend_unavailable`."""
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "tiny"}]})
        raise httpx.ConnectError("refused", request=req)

    backend = openai_backend(tiny_model_dir, handler)
    await backend.start()
    out = await backend.update(request(1))
    await backend.aclose()
    assert isinstance(out, UpdateFailure) and out.reason == FailureReason.BACKEND_UNAVAILABLE and out.retryable
    with pytest.raises(Exception, match="closed"):
        backend.check_health()


def test_tiny_tokenizer_mirrors_qwen3_flags(tiny_model_dir: Path) -> None:
    """<|im_start|>/<|im_end|> are special; <think>/</think> are added, not special, and survive decoding."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    flags = {t.content: t.special for t in tok.get_added_tokens_decoder().values()}
    assert flags["<|im_start|>"] and flags["<|im_end|>"] and flags["<|endoftext|>"]
    assert flags["<think>"] is False and flags["</think>"] is False
    ids = tok.encode("<|im_start|>assistant\n<think>\nx\n</think>\n\nok<|im_end|>").ids
    assert tok.decode(ids, skip_special_tokens=True) == "assistant\n<think>\nx\n</think>\n\nok"
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForCausalLM"] and config["head_dim"] == 64
    assert config["vocab_size"] > max(tok.get_added_tokens_decoder())


def test_tiny_model_is_built_once_atomically(tmp_path: Path) -> None:
    """ensure_tiny_model builds into the given directory once and then returns it unchanged, offline."""
    from prefstream.models.tiny import ensure_tiny_model

    target = tmp_path / "tiny"
    assert ensure_tiny_model(target) == target
    stamp = (target / "tokenizer.json").stat().st_mtime_ns
    assert ensure_tiny_model(target) == target
    assert (target / "tokenizer.json").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]  # no staging leftovers


async def test_openai_salts_the_prefix_cache_per_tenant(tiny_model_dir: Path) -> None:
    """A tenant's request carries `cache_salt` (vllm serve keys its prefix cache by it); one without a
    tenant carries none, as before tenants existed."""
    calls: list[dict] = []

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "tiny"}]})
        calls.append(json.loads(req.content))
        return completion("<think>\nx\n</think>\n\nLikes jazz.")

    backend = openai_backend(tiny_model_dir, handler)
    await backend.start()
    await backend.update(msgspec.structs.replace(request(1), user_id="shop/u1", tenant="shop"))
    await backend.update(request(2))
    await backend.aclose()
    assert calls[0]["cache_salt"] == "tenant:shop" and "cache_salt" not in calls[1]


async def test_openai_sends_the_priority_of_a_backfill_update(tiny_model_dir: Path) -> None:
    """A backfill update carries `priority` (vllm serve with --scheduling-policy priority runs it after live
    ones); a live update sends none."""
    calls: list[dict] = []

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "tiny"}]})
        calls.append(json.loads(req.content))
        return completion("<think>\nx\n</think>\n\nLikes jazz.")

    backend = openai_backend(tiny_model_dir, handler)
    await backend.start()
    await backend.update(msgspec.structs.replace(request(1), priority=1))
    await backend.update(request(2))
    await backend.aclose()
    assert calls[0]["priority"] == 1 and "priority" not in calls[1]


@pytest.mark.parametrize(("seqs", "fraction", "window"), [(32, "0.25", 40), (10, "0.25", 13), (32, "0", 32), (256, "0.25", 320)])
def test_vllm_window_queues_a_fraction_beyond_the_engine_batch(tiny_model_dir: Path, seqs: int, fraction: str,
                                                                window: int) -> None:  # fmt: skip
    """The stream keeps MAX_NUM_SEQS updates in flight plus QUEUED_FRACTION of it (rounded up) waiting in the engine."""
    from prefstream.models.backends.vllm_engine import VllmBackend

    env = {"PREFSTREAM_MODEL_BACKEND": "vllm", "PREFSTREAM_MODEL": str(tiny_model_dir),
           "PREFSTREAM_VLLM_MAX_NUM_SEQS": str(seqs), "PREFSTREAM_VLLM_QUEUED_FRACTION": fraction}  # fmt: skip
    assert VllmBackend(Settings.from_env(env).model).max_concurrency == window


@pytest.mark.parametrize("fraction", ["-0.1", "4.5"])
def test_vllm_queued_fraction_out_of_range_is_refused(fraction: str) -> None:
    """A negative or huge PREFSTREAM_VLLM_QUEUED_FRACTION is a one-line configuration error."""
    with pytest.raises(ConfigError, match="PREFSTREAM_VLLM_QUEUED_FRACTION"):
        Settings.from_env({"PREFSTREAM_VLLM_QUEUED_FRACTION": fraction})
