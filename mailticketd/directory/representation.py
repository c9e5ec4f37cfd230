"""Who may give instructions for an organisation now: nobody, or whose authorisation is only temporary."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mailticketd.directory.policy import is_authorised
from mailticketd.storage import Store


async def representation(store: Store, organisation_id: int | None, now: datetime) -> dict[str, Any]:
    """``unrepresented`` when the organisation has no authorised contact at ``now`` (operators and the
    organisation's authors are told); ``temporary`` lists the temporary authorisations and their last day."""
    if organisation_id is None:
        return {"unrepresented": False, "temporary": []}
    authorised = [user for user in await store.users.members(organisation_id) if is_authorised(user, now)]
    return {"unrepresented": not authorised,
            "temporary": [{"address": user.address, "until": user.authorised_until}
                          for user in authorised if user.is_temporary]}
