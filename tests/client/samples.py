"""Sample events for the client tests."""

from __future__ import annotations

from prefstream.client import events
from prefstream.schemas.events import Event, Item


def every_kind(user: str, prefix: str = "e") -> list[Event]:
    """One event of every kind built with the client's builders (the forget last)."""
    return [
        events.pair(user, f"{prefix}-pair", chosen="Build a small project.", rejected="Read the manual first.",
                    query="How to learn a language?", source="tests"),
        events.impression(user, f"{prefix}-imp", shown=["Title: A", Item(text="Title: B", item_id="b")], clicked=[1],
                          domain="news"),
        events.engagement(user, f"{prefix}-eng", item=Item(text="Title: Dune", item_id="b-7"),
                          negatives=["Title: Cooking for One"], domain="books", meta={"action": "purchase"}),
        events.rating(user, f"{prefix}-rat", item="Title: Pulp Fiction (1994)", score=4.5, scale=5, domain="movies"),
        events.text(user, f"{prefix}-txt", text="Brews a clean cup.", context="Review the coffee maker."),
        events.conversation(user, f"{prefix}-conv", turns=[("user", "A weekend trip? Not beaches."),
                                                            ("assistant", "Hiking in the Dolomites?")]),
        events.forget(user, f"{prefix}-forget"),
    ]  # fmt: skip
