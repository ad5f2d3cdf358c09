"""Apps shaped unlike the reference app, each written once, for tests, benchmarks and chaos runs.

- ``accounts``: integer ids, the name on the account row, no profile, ``threads`` and
  ``posts`` (tables without a prefix: a database of its own); a module of its own, which
  the tests that run the installed command line copy into an app folder;
- ``shapes``: integer accounts, UUID threads, text post ids, the display name computed
  from two columns, the avatar from another table, soft deletes; tables ``bs_*`` beside
  the reference app's, in the test run's database;
- ``string_ids``: the reference app's attribute names with text ids and unbounded text
  columns (tables ``sid_*``), bound through a custom ``Binding``;
- ``other_app``: a whole second application (models, binding, schema and sessions, the
  rows it held before going live, its web app), run by the acceptance test as separate
  processes; the binding example of docs/binding.md is its binding.

The reference app itself is ``stream_outbox.app_hooks.reference``.
"""
