"""The downstream judges: the lexical stand-in, and a chat model behind the OpenAI-compatible API."""

from __future__ import annotations

import json

import httpx
import pytest

from prefstream.eval.judges import ChatJudge, LexicalJudge, lexical_choice, polarity_counts
from prefstream.eval.selection import SelectionPrompt, parse_answer
from prefstream.models.backends.openai_chat import OpenAIChat
from prefstream.models.errors import BackendUnavailableError
from prefstream.schemas.evidence import Triple

JAZZ = Triple(query="What next?", chosen="Title: Blue Jazz Nights", rejected="Title: Heavy Metal Storm")


def test_polarity_follows_cues_and_headings() -> None:
    """Words under a `Rejected:` heading or in a sentence with a negative cue count against an item."""
    pos, neg = polarity_counts("Loves folk. Avoids opera.\nChose:\n- jazz nights (x2)\nRejected:\n- metal storm")
    assert pos["jazz"] == 1 and pos["folk"] == 1 and neg["metal"] == 1 and neg["opera"] == 1
    assert "metal" not in pos


@pytest.mark.parametrize("chosen_first", [True, False])
def test_lexical_judge_picks_the_item_the_preference_supports(chosen_first: bool) -> None:
    """With a preference that likes jazz and avoids metal, the jazz item is chosen wherever it is placed."""
    prompt = SelectionPrompt.build(JAZZ, "The user likes jazz. The user dislikes metal.", chosen_first=chosen_first)
    assert lexical_choice(prompt) == prompt.answer


def test_lexical_judge_answers_a_on_a_tie_in_the_papers_format() -> None:
    """Without information (empty preference) it answers Item A, as JSON the common parser reads."""
    import asyncio

    prompt = SelectionPrompt.build(JAZZ, "", chosen_first=False)
    reply = asyncio.run(LexicalJudge().answer(prompt, request_id="r", seed=0))
    assert parse_answer(reply.text).choice == "A" and reply.error is None


def _server(requests: list[dict[str, object]], answers: list[httpx.Response]) -> httpx.MockTransport:
    """A test double of an OpenAI-compatible server: records chat requests, replays the given answers."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "judge-model"}]})
        requests.append(json.loads(request.content))
        return answers.pop(0)

    return httpx.MockTransport(handle)


def _completion(text: str) -> httpx.Response:
    return httpx.Response(200, json={"choices": [{"message": {"content": text}, "finish_reason": "stop"}],
                                     "usage": {"prompt_tokens": 50, "completion_tokens": 6}})


async def test_chat_judge_sends_the_papers_settings() -> None:
    """The judge asks with thinking off, 16 new tokens, the paper's sampling, a seed, and the two messages."""
    requests: list[dict[str, object]] = []
    chat = OpenAIChat(base_url="http://judge/v1", model="judge-model", transport=_server(requests, [
        _completion('{"selection": "Item B"}')]))
    judge = ChatJudge(chat)
    await judge.start()
    prompt = SelectionPrompt.build(JAZZ, "likes jazz", chosen_first=False)
    reply = await judge.answer(prompt, request_id="r1", seed=42)
    await judge.aclose()
    assert parse_answer(reply.text).choice == "B"
    (body,) = requests
    assert body["max_tokens"] == 16 and body["temperature"] == 0.6 and body["top_p"] == 0.95 and body["top_k"] == 20
    assert body["seed"] == 42 and body["chat_template_kwargs"] == {"enable_thinking": False}
    assert [m["role"] for m in body["messages"]] == ["system", "user"]  # type: ignore[union-attr]
    assert "<Preference>\nlikes jazz</Preference>" in body["messages"][1]["content"]  # type: ignore[index]


async def test_chat_judge_request_failures_are_replies_and_a_down_server_raises() -> None:
    """A 400 is a reply with `error` (that request's result); 5xx until the retries run out means the server is down."""
    requests: list[dict[str, object]] = []
    chat = OpenAIChat(base_url="http://judge/v1", model="judge-model", retries=1, transport=_server(requests, [
        httpx.Response(400, json={"error": {"message": "prompt too long"}}),
        httpx.Response(503), httpx.Response(503),
    ]))
    await chat.start()
    judge = ChatJudge(chat)
    prompt = SelectionPrompt.build(JAZZ, "", chosen_first=True)
    first = await judge.answer(prompt, request_id="a", seed=1)
    with pytest.raises(BackendUnavailableError, match="server answered 503 after 2 attempts"):
        await judge.answer(prompt, request_id="b", seed=1)
    await chat.aclose()
    assert first.error == "server answered 400"
    assert len(requests) == 3  # the 400 is not retried; the 503 is, once


async def test_chat_model_refuses_a_server_without_the_model() -> None:
    """start() fails with a clear error when the server does not serve the judge model."""
    chat = OpenAIChat(base_url="http://judge/v1", model="other", transport=_server([], []))
    with pytest.raises(BackendUnavailableError, match="does not serve 'other'"):
        await chat.start()
    await chat.aclose()
