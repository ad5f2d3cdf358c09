"""The other application's binding: ``OUTBOX_BINDING=tests.apps.other_app.chat_binding:binding``.

Which binding feature each difference from the reference application needs:

- ``fields``: every attribute named otherwise (``email_address``, ``thread_id``,
  ``account_id``, ``author_id``, ``body``, ``posted_at``, ``host_id``, ``guest_id``,
  ``suggested_by``, ``opened_at``, a meetup's ``name`` as the event's title...);
- ``profile=None``: there is no profile model; the name is on the account row;
- ``soft_delete``: accounts, threads and posts carry ``deleted_at``, thread members
  ``left_at``; a row with the mark set is gone for Stream, and setting it is a deletion;
- ``user_name``: the Stream name is the account's ``name``, or its email address when
  it has none (one SQL expression; both columns are watched for changes);
- ``user_image`` + ``user_sources``: the avatar is the account's newest photo, read from
  the ``photos`` table, whose rows name the account in ``account_id`` (so a new or
  changed photo reconciles its account).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from stream_outbox.app_hooks import Binding
from stream_outbox.app_hooks.fields import BoundModels
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

__all__ = ["binding"]


def stream_name(b: BoundModels) -> Any:
    """The account's name, else its email address."""
    return func.coalesce(b.user.name, b.user.email_address)


def stream_image(b: BoundModels) -> Any:
    """The URL of the account's newest photo (none without a photo)."""
    return (
        select(Photo.url)
        .where(Photo.account_id == b.user.id)
        .order_by(Photo.id.desc())
        .limit(1)
        .scalar_subquery()
    )


binding = Binding(
    user=Account,
    profile=None,
    event=Meetup,
    conversation=Thread,
    participant=ThreadMember,
    message=Post,
    invitation=MeetupInvite,
    proposal=MeetupProposal,
    # each role's attributes where they differ from the reference app's (app_hooks.fields.ROLES)
    fields={
        "user": {"email": "email_address"},
        "event": {"organizer_id": "host_id", "title": "name"},
        "conversation": {"created_at": "opened_at"},
        "participant": {"conversation_id": "thread_id", "user_id": "account_id"},
        "message": {
            "conversation_id": "thread_id",
            "sender_id": "author_id",
            "content": "body",
            "created_at": "posted_at",
        },
        "invitation": {
            "event_id": "meetup_id",
            "user_id": "guest_id",
            "conversation_id": "thread_id",
        },
        "proposal": {
            "event_id": "meetup_id",
            "proposer_id": "suggested_by",
            "conversation_id": "thread_id",
        },
    },
    soft_delete={
        "user": "deleted_at",
        "conversation": "deleted_at",
        "participant": "left_at",
        "message": "deleted_at",
    },
    user_name=stream_name,
    user_image=stream_image,
    user_sources={Photo: "account_id"},
)
