"""The owners' promise, measured: a message posted through the legacy endpoint, from its
commit to its rendering in the other user's stream-chat-react page.

The chat page's whole stack runs (``examples/chat_app/stack.py``: the emulator with its
WebSocket, the reference app, the real relay, worker and inbound processes); the guest's
page is open in headless Chromium (Debian's). The organizer's old client posts messages
through ``POST /chat/conversations/{id}/messages``, one at a time, ``--gap`` seconds apart
(default 1 s, a chat's pace: stream-chat-react's ``Channel`` copies the channel's state
into the page at most every 500 ms, leading and trailing, on any event of the channel,
the reader's own ``message.read`` included; messages closer together than that are shown
together, up to 500 ms late, with real Stream as here). A message is committed
at its ``created_at`` (PostgreSQL's transaction time, just before the COMMIT: the figure
includes the commit); it is rendered when a MutationObserver in the guest's page sees its
text in the message list (``performance.timeOrigin + performance.now()``). One machine,
one clock. The path is cut in three: commit to the emulator receiving the worker's
``SendMessage`` (its request log), to the ``message.new`` frame arriving in the page (a
listener the benchmark adds to the page's WebSocket before the client's own), to the
message rendered.

    uv run python -m benchmarks.chat_latency [--messages 100] [--latency-ms 0,50] [--gap 1]

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
      const text = (node.lastElementChild || node).textContent.trim();
      if (!(text in window.__rendered)) window.__rendered[text] = now;
    }
  };
  seen();
  new MutationObserver(seen).observe(document.body, {
    childList: true, subtree: true, characterData: true,
  });
}"""


# Records the moment each message.new frame arrives, before the client handles it.
ARRIVALS = """(() => {
  window.__arrived = {};
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (event) => {
        const now = performance.timeOrigin + performance.now();
        try {
          const data = JSON.parse(event.data);
          const text = data.type === 'message.new' && data.message ? data.message.text : null;
          if (text && !(text in window.__arrived)) window.__arrived[text] = now;
        } catch (_) {}
      });
    }
  };
})();"""


def _rendered_at(page: Page, text: str, timeout_ms: float) -> float:
    """When ``text`` was first shown, in seconds since the epoch."""
    page.wait_for_function(
        "text => text in window.__rendered", arg=text, timeout=timeout_ms, polling=5
    )
    return float(page.evaluate("text => window.__rendered[text]", text)) / 1000


def _committed_at(answer: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(answer["created_at"])).timestamp()


def run(stack: Stack, page: Page, messages: int, gap: float) -> dict[str, list[float]]:
    """Post ``messages`` (after a warm-up), ``gap`` seconds after the one before is shown;
    each one's latency in ms, whole and by stage."""
    cast = stack.cast
    page.evaluate(OBSERVE)
    stamps: list[tuple[float, float, float]] = []  # committed, arrived, rendered
    stack.emulator.reset_request_counts()
    with requests.Session() as http:
        http.trust_env = False
        for n in range(WARM_UP + messages):
            text = f"latency probe {n:04d}"
            answer = post_legacy(stack, http, cast.organizer, cast.conversation, text)
            shown = _rendered_at(page, text, 30_000)
            arrived = float(page.evaluate("text => window.__arrived[text]", text)) / 1000
            stamps.append((_committed_at(answer), arrived, shown))
            time.sleep(gap)
    sent = sorted(call["received"] for call in stack.emulator.request_log("SendMessage"))
    if len(sent) != len(stamps):
        raise RuntimeError(f"{len(sent)} SendMessage calls for {len(stamps)} messages")
    rows = list(zip(stamps, sent, strict=True))[WARM_UP:]
    return {
        "total": [(shown - committed) * 1000 for (committed, _, shown), _ in rows],
        "to_stream": [(at - committed) * 1000 for (committed, _, _), at in rows],
        "to_page": [(arrived - at) * 1000 for (_, arrived, _), at in rows],
        "to_render": [(shown - arrived) * 1000 for (_, arrived, shown), _ in rows],
    }


def measure(latencies_ms: list[float], messages: int, gap: float = 1.0) -> list[dict[str, Any]]:
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
                    cast = stack.cast
                    page = open_page(browser, stack, cast.guest, cast.conversation, ARRIVALS)
                    started = time.monotonic()
                    samples = run(stack, page, messages, gap)
                    seconds = time.monotonic() - started
                    page.context.close()
                total = samples["total"]
                results.append(
                    {
                        "latency_ms": latency,
                        "messages": len(total),
                        "gap_s": gap,
                        "p50_ms": median(total),
                        "p95_ms": percentile(total, 95),
                        "p99_ms": percentile(total, 99),
                        "max_ms": max(total),
                        "stages_p50_ms": {k: median(v) for k, v in samples.items() if k != "total"},
                        "stages_p99_ms": {
                            k: percentile(v, 99) for k, v in samples.items() if k != "total"
                        },
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
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between messages")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    if args.messages < 1:
        parser.error("--messages must be at least 1")
    if args.gap < 0:
        parser.error("--gap must not be negative")
    latencies = [float(x) for x in args.latency_ms.split(",")]
    results = measure(latencies, args.messages, args.gap)
    for r in results:
        print(
            f"emulator {r['latency_ms']:g} ms: legacy POST commit -> rendered in the other "
            f"browser p50 {r['p50_ms']:.1f} ms  p95 {r['p95_ms']:.1f} ms  "
            f"p99 {r['p99_ms']:.1f} ms  max {r['max_ms']:.1f} ms  "
            f"({r['messages']} messages, {r['gap_s']:g} s apart)"
        )
        for stage, p50 in r["stages_p50_ms"].items():
            p99 = r["stages_p99_ms"][stage]
            print(f"    {stage:<10} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms")
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
