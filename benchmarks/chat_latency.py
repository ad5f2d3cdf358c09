"""The owners' promise, measured: a message posted through the legacy endpoint, from its
commit to its rendering in the other user's stream-chat-react page.

The chat page's whole stack runs (``examples/chat_app/stack.py``: the emulator with its
WebSocket, the reference app, the real relay, worker and inbound processes); the guest's
page is open in headless Chromium (Debian's). The organizer's old client posts messages
through ``POST /chat/conversations/{id}/messages``, one at a time. A message is committed
at its ``created_at`` (PostgreSQL's transaction time, just before the COMMIT: the figure
includes the commit); it is rendered when a MutationObserver in the guest's page sees its
text in the message list (``performance.timeOrigin + performance.now()``). One machine,
one clock.

    uv run python -m benchmarks.chat_latency [--messages 100] [--latency-ms 0,50]

Needs the page built (``cd examples/frontend && npm ci && npm run build``).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from typing import Any

import requests
from playwright.sync_api import Page, sync_playwright

from benchmarks.figures import median, percentile
from examples.chat_app.stack import Stack, running_stack
from tests.support.browser import launch, missing_chromium
from tests.support.chat_page import missing_build, open_page, post_legacy

WARM_UP = 5
# Records the moment each message text first shows in the list (the page's own code is
# untouched: the observer is the benchmark's).
OBSERVE = """() => {
  window.__rendered = {};
  const seen = () => {
    const now = performance.timeOrigin + performance.now();
    for (const node of document.querySelectorAll('.str-chat__message-text')) {
      const text = node.textContent.trim();
      if (!(text in window.__rendered)) window.__rendered[text] = now;
    }
  };
  seen();
  new MutationObserver(seen).observe(document.body, {
    childList: true, subtree: true, characterData: true,
  });
}"""


def _rendered_at(page: Page, text: str, timeout_ms: float) -> float:
    """When ``text`` was first shown, in seconds since the epoch."""
    page.wait_for_function(
        "text => text in window.__rendered", arg=text, timeout=timeout_ms, polling=5
    )
    return float(page.evaluate("text => window.__rendered[text]", text)) / 1000


def _committed_at(answer: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(answer["created_at"])).timestamp()


def run(stack: Stack, page: Page, messages: int) -> list[float]:
    """Post ``messages`` (after a warm-up) and return each one's latency in ms."""
    cast = stack.cast
    page.evaluate(OBSERVE)
    latencies: list[float] = []
    with requests.Session() as http:
        http.trust_env = False
        for n in range(WARM_UP + messages):
            text = f"latency probe {n:04d}"
            answer = post_legacy(stack, http, cast.organizer, cast.conversation, text)
            shown = _rendered_at(page, text, 30_000)
            if n >= WARM_UP:
                latencies.append((shown - _committed_at(answer)) * 1000)
    return latencies


def measure(latencies_ms: list[float], messages: int) -> list[dict[str, Any]]:
    """Each emulator latency in turn, on a stack of its own; the figures."""
    problem = missing_build() or missing_chromium()
    if problem is not None:
        raise SystemExit(problem)
    results = []
    with sync_playwright() as driver:
        browser = launch(driver)
        try:
            for latency in latencies_ms:
                with running_stack(latency_ms=latency) as stack:
                    page = open_page(browser, stack, stack.cast.guest, stack.cast.conversation)
                    started = time.monotonic()
                    samples = run(stack, page, messages)
                    seconds = time.monotonic() - started
                    page.context.close()
                results.append(
                    {
                        "latency_ms": latency,
                        "messages": len(samples),
                        "p50_ms": median(samples),
                        "p95_ms": percentile(samples, 95),
                        "p99_ms": percentile(samples, 99),
                        "max_ms": max(samples),
                        "seconds": seconds,
                    }
                )
        finally:
            browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--latency-ms", default="0,50", help="emulator latencies, comma-separated")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    if args.messages < 1:
        parser.error("--messages must be at least 1")
    latencies = [float(x) for x in args.latency_ms.split(",")]
    results = measure(latencies, args.messages)
    for r in results:
        print(
            f"emulator {r['latency_ms']:g} ms: legacy POST commit -> rendered in the other "
            f"browser p50 {r['p50_ms']:.1f} ms  p95 {r['p95_ms']:.1f} ms  "
            f"p99 {r['p99_ms']:.1f} ms  max {r['max_ms']:.1f} ms  ({r['messages']} messages)"
        )
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
