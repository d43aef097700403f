"""Verifies webhook deliveries with the Standard Webhooks reference library.

Reads a JSON list on stdin, each entry {"secret", "body", "headers"}, and
verifies each delivery as a receiver would. Prints one line per delivery;
exits 1 if any fails to verify.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook


def main() -> int:
    failed = 0
    for entry in json.load(sys.stdin):
        try:
            event = Webhook(entry["secret"]).verify(entry["body"], entry["headers"])
            print("ok", event["type"])
        except Exception as error:  # noqa: BLE001 - report every failure
            failed += 1
            print("FAILED", entry["headers"].get("webhook-id"), repr(error))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
