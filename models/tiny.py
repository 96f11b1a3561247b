"""A tiny Qwen3-architecture model, made locally, for CPU runs of the real vLLM engine.

No model hub is reachable from CI, so the model is built here from nothing: a Qwen3 `config.json`
(2 layers, head_dim 64: the smallest shape vLLM's CPU attention accepts) and a byte-level BPE
tokenizer trained with `tokenizers` on a few sentences. The tokenizer mirrors Qwen3's: the same
pre-tokenizer split, the same chat template, `<|endoftext|>`, `<|im_start|>` and `<|im_end|>` as
special tokens, and `<think>`/`</think>` (plus the tool tags) as added tokens that are *not* special,
so decoding with `skip_special_tokens=True` keeps them, as with Qwen3. There are no weights: vLLM
loads the directory with `load_format="dummy"` (random weights, gibberish text, real engine path).

`ensure_tiny_model()` builds the directory once per spec, atomically (build in a temporary sibling,
then rename), under `~/.cache/prefstream/tiny-qwen3-<hash>`, where the hash covers everything that
goes into it. It imports neither torch nor transformers. `python -m prefstream.models.tiny` prints the path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

# Bump when the build changes in a way the spec below does not capture.
_BUILD_VERSION = 1

VOCAB_SIZE = 1024  # the config's embedding rows; the tokenizer uses fewer ids
_BPE_VOCAB = 960  # ids the BPE trainer may use; added tokens come after

# Qwen3's special tokens (special=True: stripped by skip_special_tokens, never split out of user text
# by our prompt renderer) and its added-but-not-special tokens (kept by decoding), in Qwen3's order.
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
ADDED_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>")

# Qwen3's pre-tokenizer split (from its tokenizer.json), applied before byte-level mapping.
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The published Qwen3 chat template (tokenizer_config.json of the Qwen3 family), verbatim.
QWEN3_CHAT_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\\n\\n' }}
    {%- endif %}
    {{- "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in message.content %}
                {%- set content = message.content.split('</think>')[-1].lstrip('\\n') %}
                {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}"""

# What the BPE learns from: the prompt scaffolding (so rendered prompts tokenize compactly, as they
# do with Qwen3's 151k vocabulary) and some everyday preference text.
_CORPUS = (
    "You are an expert User Preference Analyst. Analyze the past preference summary and the following user "
    "interaction history to summarize the comprehensive user preferences in concise language.",
    "=====Past Preference Summary=====\n\nNot Provided.\n\n=====Interaction History=====\n=====Triple 1=====\n\n"
    "*QUERY:*\n Please recommend some news to me.\n*****\n*CHOSEN ITEM BY THE USER:*\nTitle: Jazz tonight\n"
    "*****\n*REJECTED ITEM BY THE USER:*\nTitle: Stock markets fall\n\n=====END=====\n\n",
    "Now, given the above user's past prefernce summary and the interaction history, summarize the user "
    "preferences.",
    "The user prefers science fiction novels, jazz music, hiking trips and vegetarian recipes; they reject "
    "horror films, celebrity gossip, sports betting and long technical manuals.",
    "<think>\nThe user chose the jazz album and rejected the stock market news, so they like music.\n</think>\n\n"
    "The user enjoys music and culture and avoids finance.",
    "Recommend a laptop for travel. Suggest a quiet restaurant nearby. Which book should I read next? "
    "A friendly, concise answer with examples is better than a long formal one.",
    "0123456789 , . ; : ! ? ' \" ( ) [ ] { } - _ / \\ | < > = * + # @ & % $ ~ ` ^",
)


def _spec() -> dict[str, Any]:
    return {
        "build": _BUILD_VERSION,
        "config": _config(),
        "vocab": _BPE_VOCAB,
        "split": _QWEN_SPLIT,
        "special": SPECIAL_TOKENS,
        "added": ADDED_TOKENS,
        "template": QWEN3_CHAT_TEMPLATE,
        "corpus": _CORPUS,
    }


def spec_hash() -> str:
    """A short hash of everything that goes into the model directory."""
    blob = json.dumps(_spec(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "prefstream" / f"tiny-qwen3-{spec_hash()}"


def _config() -> dict[str, Any]:
    # Token ids are filled in by _build once the tokenizer exists; these are the shape fields.
    return {
        "architectures": ["Qwen3ForCausalLM"],  # without it vLLM resolves a pooling model
        "model_type": "qwen3",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "head_dim": 64,  # vLLM's CPU attention rejects 16 and 32 here; Qwen3 itself uses 128
        "hidden_act": "silu",
        "hidden_size": 128,
        "initializer_range": 0.02,
        "intermediate_size": 256,
        "max_position_embeddings": 16384,  # the paper's max_model_len
        "max_window_layers": 2,
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "num_key_value_heads": 1,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": None,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": VOCAB_SIZE,
    }


def _build_tokenizer() -> Any:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_BPE_VOCAB,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(list(_CORPUS), trainer=trainer)
    # As in Qwen3: specials and added tokens are matched before BPE, unnormalised, anywhere in the text.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED_TOKENS])
    return tok


def _build(target: Path) -> None:
    tok = _build_tokenizer()
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS + ADDED_TOKENS}
    if max(ids.values()) >= VOCAB_SIZE:
        raise RuntimeError(f"tiny tokenizer needs {max(ids.values()) + 1} ids, config has {VOCAB_SIZE}")
    endoftext, im_end = ids["<|endoftext|>"], ids["<|im_end|>"]

    config = {**_config(), "bos_token_id": endoftext, "eos_token_id": im_end}
    (target / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    (target / "generation_config.json").write_text(
        json.dumps(
            {
                "bos_token_id": endoftext,
                "eos_token_id": [im_end, endoftext],
                "pad_token_id": endoftext,
                "do_sample": True,
                "temperature": 0.6,
                "top_p": 0.95,
                "top_k": 20,
            },
            indent=2,
        )
    )
    tok.save(str(target / "tokenizer.json"))
    added_decoder = {
        str(ids[t]): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": t in SPECIAL_TOKENS,
        }
        for t in SPECIAL_TOKENS + ADDED_TOKENS
    }
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added_decoder,
        "additional_special_tokens": [],
        "bos_token": None,
        "eos_token": "<|im_end|>",  # as in Qwen3 (the instruct tokenizer)
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "model_max_length": 16384,
        "split_special_tokens": False,
        "chat_template": QWEN3_CHAT_TEMPLATE,
    }
    (target / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    (target / "special_tokens_map.json").write_text(
        json.dumps({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, indent=2)
    )
    (target / "prefstream-tiny.json").write_text(json.dumps({"spec_hash": spec_hash()}))


def ensure_tiny_model(cache_dir: Path | None = None) -> Path:
    """Return the tiny model directory, building it once (atomically) if it is not there yet."""
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if (target / "prefstream-tiny.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _build(staging)
        try:
            os.rename(staging, target)  # atomic; fails if another process got there first
        except OSError:
            if not (target / "prefstream-tiny.json").exists():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


if __name__ == "__main__":
    print(ensure_tiny_model())
