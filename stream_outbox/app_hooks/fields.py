"""The binding: how an application's models map to Stream users, channels and messages.

An application hands :class:`Binding` its model classes by role, and says where
they differ from the reference application's (``stream_outbox.app_hooks.reference``):

- ``fields``: the attribute that holds a field, by role, where its name differs
  (``{"user": {"email": "email_address"}}``); ``None`` for a field the app lacks
  (a user without an avatar);
- ``profile=None``: the user's ``full_name`` and ``avatar_url`` live on the user row;
- ``soft_delete``: roles whose rows are deleted by setting an attribute
  (``{"user": "deleted_at"}``): a row with it set is treated as deleted;
- ``user_name`` / ``user_image``: a function of the binding returning a SQL
  expression, where a name or image is computed (two columns, another table);
  ``user_sources`` names the other tables such an expression reads, each with the
  attribute that holds the user's id, so that their changes are captured too.

A binding is checked when it is built: a model lacking an attribute the binding
needs raises :class:`BindingError` naming the model and the attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PROFILE_FIELDS", "ROLES", "BindingError", "BoundModels"]

# The fields each role's model provides (by the reference app's attribute names).
ROLES: dict[str, tuple[str, ...]] = {
    "user": ("id", "email"),
    "profile": ("user_id", "full_name", "avatar_url"),
    "event": ("id", "organizer_id", "title"),
    "conversation": ("id", "created_at"),
    "participant": ("conversation_id", "user_id"),
    "message": ("id", "conversation_id", "sender_id", "content", "created_at"),
    "invitation": ("id", "event_id", "user_id", "conversation_id"),
    "proposal": ("id", "event_id", "proposer_id", "conversation_id"),
}
PROFILE_FIELDS = ("full_name", "avatar_url")  # on the user row when there is no profile
# Fields an app may keep or not: read when its model has them (or ``fields`` names them).
OPTIONAL_FIELDS: dict[str, tuple[str, ...]] = {"participant": ("last_read_at",)}
_OPTIONAL = frozenset({("profile", "full_name"), ("profile", "avatar_url"), ("user", "email")})


class BindingError(ValueError):
    """The binding does not fit the application's models."""


@dataclass(frozen=True, eq=False)
class BoundModels:
    """The application's model classes, by role, and how their attributes are named."""

    user: type[Any]
    profile: type[Any] | None
    event: type[Any]
    conversation: type[Any]
    participant: type[Any]
    message: type[Any]
    invitation: type[Any]
    proposal: type[Any]
    fields: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    soft_delete: Mapping[str, str] = field(default_factory=dict)
    user_name: Callable[[BoundModels], Any] | None = None
    user_image: Callable[[BoundModels], Any] | None = None
    user_sources: Mapping[type[Any], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for role, names in self.fields.items():
            known = (
                (*self._fields_of(role), *OPTIONAL_FIELDS.get(role, ())) if role in ROLES else ()
            )
            if role not in ROLES or (set(names) - set(known)):
                unknown = role if role not in ROLES else sorted(set(names) - set(known))[0]
                raise BindingError(f"Binding fields: {unknown!r} is not a field of {role!r}")
        for role in ROLES:
            if self.model_of(role) is None:
                continue
            for name in self._fields_of(role):
                self._attribute(role, name)
        read = self.fields.get("participant", {}).get("last_read_at")
        if read is not None:
            self._require(self.participant, read, "the participant's last_read_at")
        for role, name in self.soft_delete.items():
            if role not in ROLES or role == "profile":
                raise BindingError(f"Binding soft_delete: {role!r} is not a role that is deleted")
            self._require(self.model_for(role), name, f"the {role}'s deletion mark")
        for model, key in self.user_sources.items():
            self._require(model, key, "the user's id")

    # -- the application's attributes --------------------------------------------------

    def model_of(self, role: str) -> type[Any] | None:
        """The model class of a role (``None`` for a missing profile)."""
        model: type[Any] | None = getattr(self, role)
        return model

    def attribute_name(self, role: str, name: str) -> str | None:
        """The app's attribute for a role's field (``None`` when the app has no such field)."""
        where = "user" if role == "profile" and self.profile is None else role
        names = {**self.fields.get(role, {}), **self.fields.get(where, {})}
        return names.get(name, name)

    def column(self, role: str, name: str) -> Any:
        """The app's ORM attribute for a role's field (profile fields: the user's without a
        profile); ``None`` when the app has no such field."""
        attribute = self.attribute_name(role, name)
        return None if attribute is None else getattr(self.model_for(role), attribute)

    def last_read_column(self) -> Any:
        """The participant's last-read time (Stream's read state), or ``None`` when the app
        keeps none."""
        name = self.attribute_name("participant", "last_read_at")
        if name is None or not hasattr(self.participant, name):
            return None
        return getattr(self.participant, name)

    def live(self, role: str) -> Any:
        """The condition a role's row is not soft-deleted (``None``: rows are deleted)."""
        mark = self.soft_delete.get(role)
        return None if mark is None else getattr(self.model_for(role), mark).is_(None)

    def model_for(self, role: str) -> type[Any]:
        """The model a role's fields are read from (the user's for a missing profile)."""
        model = self.model_of(role)
        return self.user if model is None else model

    def _fields_of(self, role: str) -> tuple[str, ...]:
        if role == "user" and self.profile is None:
            return (*ROLES["user"], *PROFILE_FIELDS)
        return ROLES[role]

    def _attribute(self, role: str, name: str) -> None:
        computed = {"full_name": self.user_name, "avatar_url": self.user_image}.get(name)
        if computed is not None and role in ("user", "profile"):
            return  # the function says where it comes from
        attribute = self.attribute_name(role, name)
        if attribute is None:
            if (role, name) not in _OPTIONAL and name not in PROFILE_FIELDS:
                raise BindingError(f"Binding fields: the {role}'s {name} cannot be None")
            return
        self._require(self.model_for(role), attribute, f"the {role}'s {name}")

    @staticmethod
    def _require(model: type[Any], attribute: str, what: str) -> None:
        if not hasattr(model, attribute):
            raise BindingError(
                f"{model.__name__} has no attribute {attribute!r} ({what}); "
                "name the right one in Binding(fields=...)"
            )

    def typed_ids(self, column: Any, values: Iterable[str]) -> list[Any]:
        """Turn target ids (strings) back into the column's Python type."""
        python_type = column.type.python_type
        return [python_type(value) for value in values]
