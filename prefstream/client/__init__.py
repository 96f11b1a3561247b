"""prefstream's client library: send events and read profiles from any Python service (sync or asyncio).

    events               typed builders for every event kind (`events.pair(...)`, ...; the worker's Structs)
    validate             an event to the bytes the worker accepts, checked with the worker's own decoder
    Producer             send events (kafka-python): keyed by the user key, the worker's partitioner, safe defaults
    AsyncProducer        the same on asyncio (aiokafka)
    ProfileReader        the latest profile per user from the compacted profiles topic (kafka-python)
    AsyncProfileReader   the same on asyncio, with an async iterator of changes
    ProfileApi           one user's profile from a worker's read API (httpx); AsyncProfileApi on asyncio
    render_preference    a profile as the `<Preference>` block of a downstream LLM prompt (AlignXplore+'s form)
    selection_messages   the AlignXplore+ authors' whole pairwise downstream prompt

Every builder, reader and read-API call takes an optional `tenant=` (docs/streams.md, "Tenants").
Nothing here imports faust, vLLM or torch: `pip install prefstream` is enough (README "From your service").
"""

from prefstream.client import events
from prefstream.client.api import AsyncProfileApi, ProfileApi
from prefstream.client.async_producer import AsyncProducer
from prefstream.client.async_reader import AsyncProfileReader
from prefstream.client.config import ClientConfig
from prefstream.client.delivery import Delivered
from prefstream.client.errors import (
    BufferFullError,
    ClientError,
    DeliveryError,
    ReadApiError,
    ReadApiUnreachable,
    TopicMissingError,
)
from prefstream.client.producer import Delivery, Producer
from prefstream.client.prompt import render_preference, selection_messages
from prefstream.client.reader import ProfileReader
from prefstream.client.view import ProfileChange, ProfileView
from prefstream.client.wire import Prepared, validate
from prefstream.schemas.errors import EventRejected
from prefstream.schemas.events import Item, Turn
from prefstream.schemas.profiles import Profile

__all__ = [
    "AsyncProducer",
    "AsyncProfileApi",
    "AsyncProfileReader",
    "BufferFullError",
    "ClientConfig",
    "ClientError",
    "Delivered",
    "Delivery",
    "DeliveryError",
    "EventRejected",
    "Item",
    "Prepared",
    "Producer",
    "Profile",
    "ProfileApi",
    "ProfileChange",
    "ProfileReader",
    "ProfileView",
    "ReadApiError",
    "ReadApiUnreachable",
    "TopicMissingError",
    "Turn",
    "events",
    "render_preference",
    "selection_messages",
    "validate",
]
