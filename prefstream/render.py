"""How the CLI shows a profile change to a person (`tail`, `profile`) or to a program (`--json`)."""

from __future__ import annotations

import json
import textwrap

from prefstream.client.view import ProfileChange, tenant_of
from prefstream.schemas.keys import user_key
from prefstream.schemas.profiles import Profile, encode_profile


def profile_json(profile: Profile) -> str:
    """The profile record as published, one line."""
    return encode_profile(profile).decode()


def change_json(change: ProfileChange) -> str:
    """One JSON line: the new profile record, or `{"user_id": ..., "forgotten": true}` (and `"tenant"` with one)."""
    if change.profile is None:
        tenant = {} if change.tenant is None else {"tenant": change.tenant}
        return json.dumps({"user_id": change.user_id, **tenant, "forgotten": True})
    return profile_json(change.profile)


def profile_text(profile: Profile, width: int = 100) -> str:
    """A header line with the user (`tenant/user_id` with a tenant) and the provenance, then the summary."""
    header = (
        f"{user_key(tenant_of(profile), profile.user_id)}  epoch {profile.epoch} version {profile.version}  "
        f"{profile.events_applied} events  updated {profile.updated_at}  {profile.backend or '?'}:{profile.model}"
    )
    body = "\n".join(
        textwrap.fill(paragraph, width, initial_indent="  ", subsequent_indent="  ") if paragraph.strip() else ""
        for paragraph in profile.summary.splitlines()
    )
    return f"{header}\n{body}"


def change_text(change: ProfileChange) -> str:
    if change.profile is None:
        return f"{user_key(change.tenant, change.user_id)}  forgotten"
    return profile_text(change.profile)
