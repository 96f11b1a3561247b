"""prefstream's wire contracts: events in, evidence for the model, profiles out, dead letters.

    events       the event Structs (tagged union on `kind`), `Event`
    decode       `decode_event(key, value, limits)` -> Event, or `EventRejected` with a stable code
    errors       `EventRejected`, `RejectCode` and what each code means
    evidence     `to_evidence(event)` -> Evidence(event_id, triples): the model's view of an event
    profiles     `Profile`, `encode_profile`, `decode_profile`
    failures     `FailureRecord` for model failures (no user text)
    deadletter   `dead_letter_headers(...)`: the `prefstream.error.*` headers of a dead letter
    bounds       static bounds and the markers of configurable ones (`LimitSettings`)
    timefmt      RFC 3339 / epoch-millisecond conversions
    generate     `python -m prefstream.schemas.generate`: JSON Schema files and docs/schemas.md tables
    examples     one hand-written valid event per kind (docs and tests use them)

The human-readable contract is docs/schemas.md.
"""
