"""Times MLflow's `load_prompt` against two servers, alternating between them.

Started by bench/mlflow.sh, which serves promptreg and a real `mlflow server`
(both on SQLite) on the same machine and passes their URLs. For each server this
registers the prompt `bench-greeting` (one version, alias `production`), then
runs ROUNDS rounds of CALLS calls to each of

  load_prompt("prompts:/bench-greeting/1")           by version
  load_prompt("prompts:/bench-greeting@production")  by alias

with the client's cache off (`cache_ttl_seconds=0`), so every call goes to the
server, alternating servers round by round. One client, one call at a time:
what a service that loads its prompt per request sees. Prints a markdown
table (calls per second, median and p99 per call, best round of each).

Usage: python bench/mlflow_load_prompt.py NAME=URL[,TOKEN] NAME=URL[,TOKEN]
"""

import os
import statistics
import sys
import time

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

CALLS = int(os.environ.get("CALLS", "500"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
NAME = "bench-greeting"
TEMPLATE = "Hello {{ name }}, welcome to {{ place }}!"


def use(url, token):
    os.environ["MLFLOW_TRACKING_URI"] = url
    if token:
        os.environ["MLFLOW_TRACKING_TOKEN"] = token
    else:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    return MlflowClient(tracking_uri=url, registry_uri=url)


def one_round(client, uri):
    times = []
    for _ in range(CALLS):
        start = time.perf_counter()
        prompt = client.load_prompt(uri, cache_ttl_seconds=0)
        times.append(time.perf_counter() - start)
        assert prompt.template == TEMPLATE, prompt.template
    return times


def main():
    servers = []
    for arg in sys.argv[1:]:
        name, _, rest = arg.partition("=")
        url, _, token = rest.partition(",")
        servers.append((name, url, token))
    for name, url, token in servers:
        client = use(url, token)
        version = client.register_prompt(NAME, TEMPLATE, commit_message="bench")
        client.set_prompt_alias(NAME, "production", version.version)
        print(f"--> {name}: registered {NAME} version {version.version}", file=sys.stderr)

    best = {}
    for round_no in range(ROUNDS):
        for name, url, token in servers:
            client = use(url, token)
            for what, uri in [("version", f"prompts:/{NAME}/1"), ("alias", f"prompts:/{NAME}@production")]:
                times = one_round(client, uri)
                rate = len(times) / sum(times)
                print(f"--> round {round_no + 1} {name} {what}: {rate:.0f} calls/s", file=sys.stderr)
                if (name, what) not in best or rate > best[(name, what)][0]:
                    best[(name, what)] = (rate, times)

    print(f"`load_prompt` with the client's cache off, {CALLS} calls per round, best of {ROUNDS} rounds:\n")
    print("| server | load_prompt by | calls/s | median | p99 |")
    print("|---|---|---:|---:|---:|")
    for name, _, _ in servers:
        for what in ["version", "alias"]:
            rate, times = best[(name, what)]
            ordered = sorted(times)
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            print(
                f"| {name} | {what} | {rate:.0f} | {statistics.median(times) * 1000:.2f} ms "
                f"| {p99 * 1000:.2f} ms |"
            )


if __name__ == "__main__":
    main()
