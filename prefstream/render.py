"""How the CLI shows a profile change to a person (`tail`, `profile`) or to a program (`--json`)."""

from __future__ import annotations

import json
import textwrap

from prefstream.client.view import ProfileChange
from prefstream.schemas.profiles import Profile, encode_profile


def profile_json(profile: Profile) -> str:
    """The profile record as published, one line."""
    return encode_profile(profile).decode()


def change_json(change: ProfileChange) -> str:
    """One JSON line: the new profile record, or `{"user_id": ..., "forgotten": true}`."""
    if change.profile is None:
        return json.dumps({"user_id": change.user_id, "forgotten": True})
    return profile_json(change.profile)


def profile_text(profile: Profile, width: int = 100) -> str:
    """A header line with the provenance, then the summary, indented."""
    header = (
        f"{profile.user_id}  epoch {profile.epoch} version {profile.version}  {profile.events_applied} events  "
        f"updated {profile.updated_at}  {profile.backend or '?'}:{profile.model}"
    )
    body = "\n".join(
        textwrap.fill(paragraph, width, initial_indent="  ", subsequent_indent="  ") if paragraph.strip() else ""
        for paragraph in profile.summary.splitlines()
    )
    return f"{header}\n{body}"


def change_text(change: ProfileChange) -> str:
    if change.profile is None:
        return f"{change.user_id}  forgotten"
    return profile_text(change.profile)
