"""The binding: how an application's models map to Stream, and which of their changes matter.

:class:`Binding` is :class:`~stream_outbox.app_hooks.fields.BoundModels` (the models by
role, their attribute names, soft deletes, computed names and images: see that module) with
the capture's rules. What the capture and the worker read through a binding is
:mod:`stream_outbox.app_hooks.reads`: ``reads.desired_users(binding, conn, ids)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from sqlalchemy import Column, inspect
from sqlalchemy.sql import visitors

from stream_outbox.app_hooks.changes import EVENT_KIND, Rule
from stream_outbox.app_hooks.desired import (
    DesiredChannel,
    DesiredMessage,
    DesiredUser,
    stream_message_id,
)
from stream_outbox.app_hooks.fields import PROFILE_FIELDS, ROLES, BindingError, BoundModels
from stream_outbox.app_hooks.outbox import TargetKind

__all__ = [
    "ROLES",
    "Binding",
    "BindingError",
    "DesiredChannel",
    "DesiredMessage",
    "DesiredUser",
    "stream_message_id",
]


@dataclass(frozen=True, eq=False)
class Binding(BoundModels):
    """The application's models mapped to Stream: rules for capture, reads for everyone."""

    # -- which changes matter ----------------------------------------------------------

    @cached_property
    def rules(self) -> dict[type[Any], Rule]:
        """Which changes of which model matter to Stream, and to which target."""
        user, conversation = TargetKind.USER.value, TargetKind.CONVERSATION.value
        rules = {
            self.user: self._rule("user", user, "id", self._user_watched()),
            self.conversation: self._rule("conversation", conversation, "id", ("id",)),
            self.participant: self._read_rule(
                self._rule(
                    "participant", conversation, "conversation_id", ("conversation_id", "user_id")
                )
            ),
            self.invitation: self._rule(
                "invitation", conversation, "conversation_id", ("conversation_id", "event_id")
            ),
            self.proposal: self._rule(
                "proposal",
                conversation,
                "conversation_id",
                ("conversation_id", "event_id", "proposer_id"),
            ),
            self.event: self._rule("event", EVENT_KIND, "id", ("id", "title", "organizer_id")),
            self.message: self._rule(
                "message",
                TargetKind.MESSAGE.value,
                "id",
                ("id", "conversation_id", "sender_id", "content"),
                payload=("conversation_id",),
            ),
        }
        if self.profile is not None:
            rules[self.profile] = self._rule(
                "profile", user, "user_id", ("user_id", "full_name", "avatar_url")
            )
        for model, key in self.user_sources.items():
            watched = frozenset(prop.key for prop in inspect(model).column_attrs)
            rules[model] = Rule(user, key, watched, owns_target=False)
        return rules

    def _rule(
        self,
        role: str,
        kind: str,
        key: str,
        watched: Iterable[str],
        payload: tuple[str, ...] = (),
    ) -> Rule:
        names = {name: self.attribute_name(role, name) for name in (key, *watched, *payload)}
        present = {attr for attr in names.values() if attr is not None}
        mark = self.soft_delete.get(role)
        return Rule(
            kind,
            str(names[key]),
            frozenset(present | ({mark} if mark else set())),
            tuple(str(names[name]) for name in payload),
            deleted=mark,
            payload_keys=payload,
        )

    def _read_rule(self, rule: Rule) -> Rule:
        """The participant's rule, with its read time where the app keeps one."""
        column = self.last_read_column()
        if column is None:
            return rule
        return replace(rule, read=column.key, reader=self.attribute_name("participant", "user_id"))

    def _user_watched(self) -> tuple[str, ...]:
        """The user row's fields, and its columns the name and image expressions read."""
        computed = {"full_name": self.user_name, "avatar_url": self.user_image}
        watched = ["id", "email"]
        if self.profile is None:  # the name and image on the user row, unless computed
            watched += [name for name in PROFILE_FIELDS if computed[name] is None]
        mapper = inspect(self.user)
        for make in (self.user_name, self.user_image):
            if make is None:
                continue
            for element in visitors.iterate(make(self)):
                if isinstance(element, Column) and element.table in mapper.tables:
                    watched.append(mapper.get_property_by_column(element).key)
        return tuple(dict.fromkeys(watched))

    def rule_for(self, cls: type[Any]) -> Rule | None:
        """The rule of a mapped class or of its nearest bound base class."""
        cache = self._rule_cache
        if cls not in cache:
            cache[cls] = next(
                (self.rules[klass] for klass in cls.__mro__ if klass in self.rules), None
            )
        return cache[cls]

    @cached_property
    def _rule_cache(self) -> dict[type[Any], Rule | None]:
        return {}
