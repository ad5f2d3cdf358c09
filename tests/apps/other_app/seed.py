"""The other app's rows before it went live: written by the app alone, nothing captured.

:func:`seed_existing` writes them through plain sessions (the app as it was before
``stream_outbox.app_hooks.install``), as an application that has been running for years holds them:
accounts (one soft-deleted long ago), photos, meetups with an invite and a proposal,
threads (one soft-deleted, one that an account left) and posts (one soft-deleted).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from tests.apps.other_app.models import (
    Account,
    Meetup,
    MeetupInvite,
    MeetupProposal,
    Photo,
    Post,
    Thread,
    ThreadMember,
)

__all__ = ["T0", "Existing", "seed_existing"]

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Existing:
    """Ids of the rows the app held before installing stream-outbox."""

    ada: int
    grace: int
    linus: int
    gone: int  # an account soft-deleted long ago
    dm: uuid.UUID  # Ada and Grace (Linus left), with posts
    invite_thread: uuid.UUID  # Linus invited to Ada's meetup
    proposal_thread: uuid.UUID  # Grace proposes Ada's meetup
    deleted_thread: uuid.UUID
    invite: int
    proposal: int


def seed_existing(factory: sessionmaker[Session]) -> Existing:
    """The app's rows, written by the app as it was: no hooks, nothing captured."""
    with factory() as session, session.begin():
        ada = Account(email_address="ada@example.org", name="Ada Lovelace")
        grace = Account(email_address="grace@example.org")  # no name: the email stands in
        linus = Account(email_address="linus@example.org", name="Linus")
        gone = Account(email_address="gone@example.org", name="Gone", deleted_at=T0)
        session.add_all([ada, grace, linus, gone])
        session.flush()
        session.add_all(
            [
                Photo(account_id=ada.id, url="https://img.example.org/ada-1.png"),
                Photo(account_id=ada.id, url="https://img.example.org/ada-2.png"),
            ]
        )
        dm, invite_thread, proposal_thread, deleted = (Thread(opened_at=T0) for _ in range(4))
        deleted.deleted_at = T0
        session.add_all([dm, invite_thread, proposal_thread, deleted])
        session.flush()
        members = [
            (dm, ada, None),
            (dm, grace, None),
            (dm, linus, T0),  # left before going live
            (invite_thread, ada, None),
            (invite_thread, linus, None),
            (proposal_thread, grace, None),
            (proposal_thread, ada, None),
            (deleted, ada, None),
            (deleted, grace, None),
        ]
        session.add_all(
            ThreadMember(thread_id=t.id, account_id=a.id, left_at=left) for t, a, left in members
        )
        meetup = Meetup(host_id=ada.id, name="Book club")
        session.add(meetup)
        session.flush()
        invite = MeetupInvite(meetup_id=meetup.id, guest_id=linus.id, thread_id=invite_thread.id)
        proposal = MeetupProposal(
            meetup_id=meetup.id, suggested_by=grace.id, thread_id=proposal_thread.id
        )
        session.add_all([invite, proposal])
        session.add_all(
            [
                Post(
                    id="post-1", thread_id=dm.id, author_id=ada.id, body="Hello Grace", posted_at=T0
                ),
                Post(
                    id="post-2",
                    thread_id=dm.id,
                    author_id=grace.id,
                    body="Hello Ada",
                    posted_at=T0 + timedelta(minutes=1),
                ),
                Post(
                    id="post-3",
                    thread_id=dm.id,
                    author_id=ada.id,
                    body="(deleted)",
                    posted_at=T0 + timedelta(minutes=2),
                    deleted_at=T0 + timedelta(minutes=3),
                ),
            ]
        )
        session.flush()
        return Existing(
            ada.id,
            grace.id,
            linus.id,
            gone.id,
            dm.id,
            invite_thread.id,
            proposal_thread.id,
            deleted.id,
            invite.id,
            proposal.id,
        )
