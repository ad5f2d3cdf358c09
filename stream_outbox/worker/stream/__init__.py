"""Talking to Stream: the gateway over the SDK, its HTTP session, what Stream's errors mean,
and Stream's times.

Nothing is imported here: a module that needs Stream's limits or error answers does not
pay for the SDK (and aiohttp, which it imports) at start-up. Import from the modules.
"""
