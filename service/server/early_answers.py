"""The hook through which the app answers a request from its head alone, before the server
starts the request's ASGI cycle, and holds the connection's next request back.

Under a flood of clients that resend as soon as they are refused, a refusal through the ASGI
stack costs a task, the middleware and the app's response machinery: as much CPU as a small
admitted request, taken from the requests being served. Answered here it costs a few
microseconds; and because such a client's next request would only be refused again, the
server does not read it until the app says a slot is free (`EarlyAnswer.wait`) or
`EarlyAnswer.hold_s` has passed. The waiting request costs nothing but kernel buffer space,
and the event loop stays short, so probes and admitted requests keep their pace.

The app puts an `EarlyAnswerHook` in its lifespan state under `EARLY_ANSWER_KEY` (uvicorn
hands that state to the protocol); the protocol calls it once per request head, when no other
answer of the connection is under way. The hook answers None for every request it leaves to
the app, which remains the reference: for a request the hook answers, the app would give the
same status, headers and body (tests/e2e/test_early_answers.py); the hook leaves to the app
every request the app would answer otherwise (a body over the limit, a CORS request).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

EARLY_ANSWER_KEY = "service.early_answer"

# Called by the app once a slot is free; True when it resumed a connection (False: the
# connection is gone or was resumed already, so the app wakes the next one).
Resume = Callable[[], bool]
# Given to the app with a Resume: withdraws it (the hold ended another way, or the connection
# closed), so the app keeps no callbacks for connections that no longer wait.
Withdraw = Callable[[], None]


class EarlyAnswer(NamedTuple):
    status: int
    headers: list[tuple[bytes, bytes]]  # lower-case names, Content-Length included
    body: bytes
    # Once the refused request's body has been read, the connection's next request is read
    # only when the app calls the `Resume` given to `wait`, or after `hold_s` seconds.
    hold_s: float = 0.0
    wait: Callable[[Resume], Withdraw] | None = None


# (method, request target as sent, header fields with lower-case names, whether the request
# was held back until the hold ran out) -> answer or None
EarlyAnswerHook = Callable[[bytes, bytes, list[tuple[bytes, bytes]], bool], EarlyAnswer | None]
