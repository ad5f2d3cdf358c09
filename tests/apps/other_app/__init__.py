"""A second application, shaped nothing like the reference one, bound through ``Binding``.

Its tables and columns are its own: ``accounts`` with integer ids and the display name
in ``name``, avatars in a ``photos`` table, no profile model, soft deletes on accounts,
threads, thread members (``left_at``) and posts, text ids for posts, integer ids for
meetups and their invites and proposals. ``chat_binding:binding`` maps it to Stream;
``web`` is its FastAPI app with the chat router; ``db`` creates its schema and its
sessions (plain, or installed); ``seed`` writes its rows from before going live. The
processes load the binding as
``OUTBOX_BINDING=tests.apps.other_app.chat_binding:binding``.
"""

__all__: list[str] = []
