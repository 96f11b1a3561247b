#!/usr/bin/env bash
# Regenerate the runs shown in docs/eval.md (tables and figures under docs/eval/). CPU only, no model hub.
#   bash bench/eval_docs.sh            # synthetic users, extractive baseline, lexical judge (about a minute)
#   bash bench/eval_docs.sh --tiny     # also the tiny local vLLM model as preference model and judge (minutes)
# Runs are resumable: re-running skips what is done. Delete runs/eval-docs/ to start over.
set -euo pipefail
cd "$(dirname "$0")/.."
pf=.venv/bin/prefstream
runs=runs/eval-docs
docs=docs/eval
mkdir -p "$runs" "$docs"

# 1. The paper's protocol (2 streaming steps, halves / thirds) on 200 synthetic users.
$pf eval generate --users 200 --events 24 --noise 0.1 --drift 0.3 --seed 1 --out "$runs/synth-200.jsonl"
$pf eval run --benchmark "$runs/synth-200.jsonl" --preference-backend extractive --judge lexical \
  --steps 2 --probes 2 --out "$runs/paper-k2" --no-progress > /dev/null
cp "$runs/paper-k2/results.md" "$docs/paper-k2.md"; cp "$runs/paper-k2/plot.png" "$docs/paper-k2.png"

# 2. Long chains: 32 steps over 96 events per user, without and with PREFSTREAM_MAX_SUMMARY_TOKENS.
$pf eval generate --users 100 --events 96 --noise 0.1 --drift 0.5 --seed 2 --out "$runs/synth-long.jsonl"
$pf eval run --benchmark "$runs/synth-long.jsonl" --preference-backend extractive --judge lexical \
  --steps 32 --probes 3 --out "$runs/chain-k32" --no-progress > /dev/null
PREFSTREAM_MAX_SUMMARY_TOKENS=64 $pf eval run --benchmark "$runs/synth-long.jsonl" --preference-backend extractive \
  --judge lexical --steps 32 --probes 3 --out "$runs/chain-k32-max64" --no-progress > /dev/null
for r in chain-k32 chain-k32-max64; do cp "$runs/$r/results.md" "$docs/$r.md"; cp "$runs/$r/plot.png" "$docs/$r.png"; done

# 3. The tiny local model (random weights) as preference model and judge, sharing one vLLM engine.
if [ "${1:-}" = "--tiny" ]; then
  tiny=$(.venv/bin/python -m prefstream.models.tiny)
  VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_CI_ENV=1 PREFSTREAM_MODEL="$tiny" PREFSTREAM_VLLM_LOAD_FORMAT=dummy \
  PREFSTREAM_VLLM_DTYPE=bfloat16 PREFSTREAM_VLLM_ENFORCE_EAGER=true PREFSTREAM_VLLM_MAX_MODEL_LEN=4096 \
  PREFSTREAM_VLLM_MAX_NUM_SEQS=32 PREFSTREAM_VLLM_MAX_NUM_BATCHED_TOKENS=4096 PREFSTREAM_MAX_TOKENS=32 \
  PREFSTREAM_PROMPT_TOKEN_BUDGET=3072 PREFSTREAM_TIMEOUT_START_OVERHEAD_S=120 \
    $pf eval run --benchmark "$runs/synth-200.jsonl" --limit 16 --preference-backend vllm --judge vllm \
    --steps 2 --probes 1 --out "$runs/tiny-vllm" --no-progress > /dev/null
  cp "$runs/tiny-vllm/results.md" "$docs/tiny-vllm.md"; cp "$runs/tiny-vllm/plot.png" "$docs/tiny-vllm.png"
fi
# 4. Copy the tables into docs/eval.md (between its <!-- eval:NAME:start/end --> markers).
.venv/bin/python - "$runs" <<'PY'
import json, re, sys
from pathlib import Path

runs = Path(sys.argv[1])
doc = Path("docs/eval.md")
text = doc.read_text()

def fill(text: str, name: str, body: str) -> str:
    start, end = f"<!-- eval:{name}:start -->", f"<!-- eval:{name}:end -->"
    return re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{body}\n{end}", text, flags=re.S)

def table(run: str) -> str:  # the run's markdown without its data line
    return "\n".join((runs / run / "results.md").read_text().splitlines()[2:]).strip()

text = fill(text, "paper-k2", table("paper-k2"))
rows = ["| setting | step | accuracy % | 95% CI | early-probe retention % | flip rate % | mean summary tokens |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |"]
for run, label in (("chain-k32", "default"), ("chain-k32-max64", "`PREFSTREAM_MAX_SUMMARY_TOKENS=64`")):
    res = json.loads((runs / run / "results.json").read_text())
    for s in res["steps"]:
        if s["step"] in (1, 2, 4, 8, 16, 32):
            pct = lambda x: "–" if x is None else f"{100 * x:.1f}"
            rows.append(f"| {label} | {s['step']} | {pct(s['accuracy'])} | {pct(s['ci_low'])}–{pct(s['ci_high'])} "
                        f"| {pct(s['retention'])} | {pct(s['flip_rate'])} | {s['mean_summary_tokens']:.0f} |")
    full = {m["method"]: m for m in res["methods"]}["extractive/full"]
    rows.append(f"| {label} | full history | {pct(full['accuracy'])} | {pct(full['ci_low'])}–{pct(full['ci_high'])} "
                f"| {pct(full['retention'])} | – | {full['mean_summary_tokens']:.0f} |")
text = fill(text, "chain", "\n".join(rows))
if (runs / "tiny-vllm" / "results.md").exists():
    text = fill(text, "tiny", table("tiny-vllm"))
doc.write_text(text)
PY
ls -l "$docs"
