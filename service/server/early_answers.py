"""The hook through which the app answers a request from its head alone, before the server
starts the request's ASGI cycle, and holds the connection's next request back.

Under a flood of clients that resend as soon as they are refused, a refusal through the ASGI
stack costs a task, the middleware and the app's response machinery: as much CPU as a small
admitted request, taken from the requests being served. Answered here it costs a few
microseconds; and because such a client's next request would only be refused again, the
server does not read it until the app says a slot is free (`EarlyAnswer.wait`) or the hold
has passed (longer for a client that did not wait for `Retry-After`). The waiting request
costs nothing but kernel buffer space, and the event loop stays short, so probes and admitted
requests keep their pace.

The app puts an `EarlyAnswerHook` in its lifespan state under `EARLY_ANSWER_KEY` (uvicorn
hands that state to the protocol); the protocol calls it once per request head, when no other
answer of the connection is under way. The hook may also admit a request (`Admitted`): the
server then marks its scope (`ADMITTED_KEY`) and runs it as usual. The hook answers None for
every request it leaves to the app, which remains the reference: for a request the hook
answers, the app would give the same status, headers and body (tests/e2e/test_early_answers.py);
the hook leaves to the app every request the app would answer otherwise (a body over the
limit, a CORS request).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

EARLY_ANSWER_KEY = "service.early_answer"

# Called by the app once a slot is free, which it then keeps for the resumed connection's next
# request; True when it resumed a connection (False: the connection is gone or closing, so the
# app wakes the next one).
Resume = Callable[[], bool]
# Given to the app with a Resume; the server calls it once, when the connection stops waiting:
# with True when its next request's head has arrived (a slot kept for it after a resume is
# released just before the hook decides on that request), with False otherwise (the hold ended
# another way, the connection closed, or a resumed connection sent nothing in time: a kept
# slot goes back). So the app keeps no callbacks, and no slots, for connections that no
# longer wait.
Withdraw = Callable[[bool], None]


class EarlyAnswer(NamedTuple):
    status: int
    headers: list[tuple[bytes, bytes]]  # lower-case names, Content-Length included
    body: bytes
    # Once the refused request's body has been read, the connection's next request is read
    # only when the app calls the `Resume` given to `wait`, or once `hold_s` seconds (its
    # Retry-After) have passed since this answer; if that request came before then (its
    # client did not wait), once `early_retry_hold_s` have. The server looks just before
    # `hold_s` ends, and only what came before that counts as early.
    hold_s: float = 0.0
    early_retry_hold_s: float = 0.0
    # The request's declared body length (-1: not known): what the server drops unread.
    body_bytes: int = -1
    wait: Callable[[Resume], Withdraw] | None = None


class Admitted(NamedTuple):
    """The hook's answer for a request it admits itself: the app's slot is taken for it from
    the head, in the same event-loop iteration as the check, so no request read in between
    (the app's own check runs only once the request's task starts) takes it first. The server
    hands it back to the app in the request's scope."""

    body_bytes: int  # what the admission counted of the request's body


# Set by the server (to the hook's `Admitted`) in the scope of a request the hook admitted:
# the app must not take a second slot for it, and gives its slot back when the request ends.
ADMITTED_KEY = "service.admitted"

# (method, request target as sent, header fields with lower-case names, whether the request
# was sent before its connection's last refusal's Retry-After had passed and held until its
# hold ran out) -> an answer, an admission, or None (left to the app)
EarlyAnswerHook = Callable[
    [bytes, bytes, list[tuple[bytes, bytes]], bool], EarlyAnswer | Admitted | None
]
