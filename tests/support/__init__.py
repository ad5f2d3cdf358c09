"""What the tests, the benchmarks and the chaos run stand on, each written once.

- ``settings``: where PostgreSQL and Redis are, the emulator's credentials, and the
  settings and environment variables that point the product's code and processes at them;
- ``database``: scratch databases (empty, or with the outbox and the reference app);
- ``redis``: this run's key prefix, clearing it, private ``redis-server`` processes;
- ``processes``: starting commands in process groups of their own, waiting for them,
  stopping them; free ports;
- ``emulator``: the Stream emulator in a process of its own;
- ``user_client``: client-side calls with a user token, as stream-chat-js makes them;
- ``webhook_receiver``: an HTTP endpoint on a thread recording the webhooks it gets;
- ``pipeline``: the relay and a worker in the test's process, against real services;
- ``outbox``: outbox rows written and read by hand;
- ``story``: scenes of the reference app; ``app_model``: random changes through it.

Apps shaped unlike the reference are in ``tests/apps``.
"""
