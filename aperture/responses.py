"""Which provider made a stored OpenAI Responses API response.

`GET /v1/responses/{id}` and the other requests about a stored response carry
no model, so they cannot be routed by model. They go to the provider that
made the response, found from its id:

1. the ids this worker saw in the last answers it relayed (a bounded map,
   filled as each exchange ends), then
2. the capture store's `resp` index, which every worker's records fill, so
   another worker, or this one after a restart, finds it too (only with
   capture on; the index keeps an id for `RESPONSE_ID_DAYS`);
3. otherwise, when exactly one configured provider speaks the Responses API,
   that one;
4. otherwise 404, saying the id is unknown.

Access: a known response belongs to the user who made it; another user gets
the same 404 as for an unknown id (admins excepted), and the grants must
allow its model. For an unknown response the grants must allow some model of
the provider it goes to.
"""

from __future__ import annotations

from collections import OrderedDict

from aperture.errors import Forbidden, NotFound
from aperture.policy import NO_ROLE

#: how long the capture store remembers which provider made a response
#: (OpenAI keeps stored responses for 30 days)
RESPONSE_ID_DAYS = 30


class StoredResponses:
    def __init__(self, lookup=None, size: int = 4096) -> None:
        #: a function id -> (provider id, model, user) or None (the capture store's index)
        self._lookup = lookup
        self._recent: OrderedDict[str, tuple[str, str, str]] = OrderedDict()
        self._size = size

    def remember(self, response_id: str, provider: str, model: str, user: str) -> None:
        recent = self._recent
        recent[response_id] = (provider, model, user)
        recent.move_to_end(response_id)
        if len(recent) > self._size:
            recent.popitem(last=False)

    def owner(self, response_id: str) -> tuple[str, str, str] | None:
        found = self._recent.get(response_id)
        if found is None and self._lookup is not None:
            found = self._lookup(response_id)
        return found

    def route(self, route, identity, snapshot):
        """(provider, model) for a request about the stored response
        `route.response_id`, after the access checks above; or a GatewayError."""
        rid = route.response_id
        policy = snapshot.policy
        owner = self.owner(rid)
        if owner is not None:
            pid, model, user = owner
            if user and user != identity.principal and policy.role(identity) != "admin":
                raise NotFound("response %s not found" % rid)
            provider = snapshot.config.providers.get(pid)
            if provider is None or provider.compatibility.isdisjoint(route.flags):
                raise NotFound("response %s was made by provider %s, which no longer serves the "
                               "%s API format" % (rid, pid, route.flags[0]))
            denial = policy.check(identity, pid, model)
            if denial is not None:
                raise Forbidden(denial)
            return provider, model
        speakers = snapshot.router.speakers(route.flags)
        if len(speakers) != 1:
            raise NotFound("response %s not found: aperture has no record of the provider that made "
                           "it, and %d providers serve the %s API format"
                           % (rid, len(speakers), route.flags[0]))
        provider = speakers[0]
        if not policy.allowed_models(identity, [provider]):
            raise Forbidden(NO_ROLE if policy.role(identity) is None
                            else "access denied: no model of provider %s granted" % provider.id)
        return provider, ""
