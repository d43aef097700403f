"""The real Langfuse Python SDK against a running promptreg.

Started by the Rust test `langfuse::sdk_*` (tests/api/langfuse.rs), which
serves promptreg on a local port, seeds prompts through /v1 and passes:

  PROMPTREG_URL                          base URL of the server
  LF_PUBLIC_KEY, LF_SECRET_KEY           an admin key: its id and its secret
  LF_READ_PUBLIC_KEY, LF_READ_SECRET_KEY a read-only key
  LF_SPARE_PUBLIC_KEYS                   two more key ids (comma-separated),
                                         for the refused key pairs

Every check that fails is printed; the exit status is the number of failures
(capped), 0 when all pass.
"""

import logging
import os
import sys
import traceback

import httpx
from langfuse import Langfuse
from langfuse.api import AccessDeniedError, NotFoundError, UnauthorizedError

URL = os.environ["PROMPTREG_URL"]
PUBLIC = os.environ["LF_PUBLIC_KEY"]
SECRET = os.environ["LF_SECRET_KEY"]
READ_PUBLIC = os.environ["LF_READ_PUBLIC_KEY"]
READ_SECRET = os.environ["LF_READ_SECRET_KEY"]
SPARE = os.environ["LF_SPARE_PUBLIC_KEYS"].split(",")


class Capture(logging.Handler):
    """Keeps every record at WARNING or above."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record)


capture = Capture()
# The SDK logs through `langfuse`; its span export through `opentelemetry`.
for name in ("langfuse", "opentelemetry"):
    logging.getLogger(name).addHandler(capture)

failures = []


def check(what, condition, detail=""):
    status = "ok  " if condition else "FAIL"
    print(f"{status} {what}{': ' + str(detail) if detail and not condition else ''}")
    if not condition:
        failures.append(what)


def step(what):
    """Runs a named group of checks; an exception fails the group."""

    def wrap(fn):
        try:
            fn()
        except Exception:  # noqa: BLE001 - reported, not swallowed
            check(what, False, traceback.format_exc())
        return fn

    return wrap


v1 = httpx.Client(base_url=URL, headers={"Authorization": f"Bearer {SECRET}"}, timeout=10)


def v1_get(path):
    response = v1.get(path)
    response.raise_for_status()
    return response.json()


langfuse = Langfuse(public_key=PUBLIC, secret_key=SECRET, base_url=URL, flush_interval=60)


@step("auth_check")
def _():
    check("auth_check() is true", langfuse.auth_check() is True)


@step("get_prompt by default label")
def _():
    prompt = langfuse.get_prompt("greet")
    check("default is production (version 1)", prompt.version == 1, prompt.version)
    check("template", prompt.prompt == "Hello {{name}}!", prompt.prompt)
    check("labels", prompt.labels == ["production"], prompt.labels)
    check("tags", prompt.tags == ["support"], prompt.tags)
    check("empty config", prompt.config == {}, prompt.config)
    check("compile", prompt.compile(name="Ada") == "Hello Ada!", prompt.compile(name="Ada"))


@step("get_prompt by label, version and latest")
def _():
    staging = langfuse.get_prompt("greet", label="staging")
    check("label staging is version 2", staging.version == 2, staging.version)
    check("config is model_config", staging.config == {"model": "gpt-4o-mini", "temperature": 0.2}, staging.config)
    check("commit message", staging.commit_message == "Warmer greeting", staging.commit_message)
    check(
        "compile with two variables",
        staging.compile(name="Ada", place="Paris") == "Hi Ada, welcome to Paris.",
        staging.compile(name="Ada", place="Paris"),
    )
    by_number = langfuse.get_prompt("greet", version=2)
    check("version=2", by_number.version == 2 and by_number.prompt == staging.prompt, by_number.version)
    latest = langfuse.get_prompt("greet", label="latest")
    check("latest is version 2", latest.version == 2, latest.version)
    check("latest carries `latest`", "latest" in latest.labels, latest.labels)


@step("get_prompt of a folder")
def _():
    prompt = langfuse.get_prompt("support/faq")
    check("folder prompt", prompt.name == "support/faq" and prompt.version == 1, prompt.name)
    check("folder compile", prompt.compile(product="promptreg") == "FAQ for promptreg")


@step("chat prompt with a placeholder")
def _():
    prompt = langfuse.get_prompt("chat/assistant", type="chat")
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    compiled = prompt.compile(name="Ada", question="Why?", history=history)
    expected = [
        {"role": "system", "content": "You help Ada. Be kind."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Why?"},
    ]
    plain = [{"role": m["role"], "content": m["content"]} for m in compiled]
    check("history spliced at the placeholder, partial inlined", plain == expected, plain)


@step("create_prompt (text)")
def _():
    created = langfuse.create_prompt(
        name="created/text",
        prompt="Dear {{name}},",
        labels=["production"],
        tags=["sdk"],
        config={"model": "m1"},
        commit_message="first",
    )
    check("created version 1", created.version == 1, created.version)
    check("created labels", sorted(created.labels) == ["latest", "production"], created.labels)
    version = v1_get("/v1/prompts/created%2Ftext/versions/production")
    check("/v1 template", version["template"] == "Dear {{name}},", version)
    check("/v1 engine", version["engine"] == "handlebars", version["engine"])
    check("/v1 semver", version["version"] == "1.0.0" and version["seq"] == 1, version["version"])
    check("/v1 model_config", version["model_config"] == {"model": "m1"}, version["model_config"])
    check("/v1 message", version["message"] == "first", version["message"])
    check("/v1 tags", v1_get("/v1/prompts/created%2Ftext")["tags"] == ["sdk"])

    again = langfuse.create_prompt(
        name="created/text", prompt="Dear {{name}},", config={"model": "m1"}, labels=["staging"]
    )
    check("identical content: same version", again.version == 1, again.version)
    check("identical content: label applied", "staging" in again.labels, again.labels)
    versions = v1_get("/v1/prompts/created%2Ftext/versions")["items"]
    check("identical content: nothing created", len(versions) == 1, len(versions))
    labels = {l["name"]: l["version"] for l in v1_get("/v1/prompts/created%2Ftext/labels")["items"]}
    check("/v1 sees the label", labels == {"production": "1.0.0", "staging": "1.0.0"}, labels)

    second = langfuse.create_prompt(name="created/text", prompt="Dear {{name}}!")
    check("new content: version 2", second.version == 2, second.version)
    check("/v1 patch bump", v1_get("/v1/prompts/created%2Ftext/versions/latest")["version"] == "1.0.1")


@step("create_prompt (chat)")
def _():
    created = langfuse.create_prompt(
        name="created/chat",
        type="chat",
        prompt=[
            {"role": "system", "content": "You are {{persona}}."},
            {"type": "placeholder", "name": "history"},
            {"role": "user", "content": "{{question}}"},
        ],
        labels=["production"],
    )
    check("chat created", created.version == 1, created.version)
    version = v1_get("/v1/prompts/created%2Fchat/versions/1.0.0")
    check(
        "/v1 messages",
        version["type"] == "chat"
        and version["messages"]
        == [
            {"role": "system", "content": "You are {{persona}}."},
            {"role": "placeholder", "name": "history"},
            {"role": "user", "content": "{{question}}"},
        ],
        version.get("messages"),
    )
    fetched = langfuse.get_prompt("created/chat", type="chat")
    compiled = fetched.compile(persona="a pirate", question="Ahoy?", history=[{"role": "user", "content": "x"}])
    check("chat round trip", [m["content"] for m in compiled] == ["You are a pirate.", "x", "Ahoy?"], compiled)


@step("update_prompt")
def _():
    updated = langfuse.update_prompt(name="greet", version=2, new_labels=["production"])
    check("update answers version 2", updated.version == 2, updated.version)
    check("update answers its labels", "production" in updated.labels, updated.labels)
    moves = v1_get("/v1/prompts/greet/labels/production/history")["items"]
    check(
        "/v1 label history records the move",
        moves and moves[0]["from"] == "1.0.0" and moves[0]["to"] == "1.0.1",
        moves,
    )
    # update_prompt drops the SDK's cache for the prompt.
    check("get_prompt sees the move", langfuse.get_prompt("greet").version == 2)


@step("fallback and not found")
def _():
    fallback = langfuse.get_prompt("missing", fallback="Hi {{name}}", max_retries=0)
    check("fallback used", fallback.is_fallback and fallback.compile(name="Ada") == "Hi Ada")
    try:
        langfuse.get_prompt("missing-too", max_retries=0)
        check("no fallback: NotFoundError", False, "no exception")
    except NotFoundError as e:
        check("no fallback: NotFoundError", e.status_code == 404)
        check("not found body", e.body.get("error") == "LangfuseNotFoundError", e.body)


@step("listing")
def _():
    listed = langfuse.api.prompts.list(limit=100)
    names = sorted(p.name for p in listed.data)
    expected = sorted(["greet", "support/faq", "common/kind", "chat/assistant", "created/text", "created/chat"])
    check("list names", names == expected, names)
    check("list meta", listed.meta.total_items == 6 and listed.meta.page == 1, listed.meta)
    greet = next(p for p in listed.data if p.name == "greet")
    check("list versions", greet.versions == [1, 2], greet.versions)
    by_label = langfuse.api.prompts.list(label="staging")
    check("list by label", sorted(p.name for p in by_label.data) == ["created/text", "greet"], by_label.data)


@step("refused keys")
def _():
    wrong_secret = Langfuse(public_key=SPARE[0], secret_key="pr_" + "0" * 40, base_url=URL, tracing_enabled=False)
    try:
        wrong_secret.auth_check()
        check("wrong secret: 401", False, "accepted")
    except UnauthorizedError as e:
        check("wrong secret: 401", e.status_code == 401 and e.body.get("error") == "UnauthorizedError", e.body)
    mismatched = Langfuse(public_key=SPARE[1], secret_key=READ_SECRET, base_url=URL, tracing_enabled=False)
    try:
        mismatched.get_prompt("greet", max_retries=0)
        check("mismatched public key: 401", False, "accepted")
    except UnauthorizedError as e:
        check("mismatched public key: 401", e.status_code == 401, e.body)
    reader = Langfuse(public_key=READ_PUBLIC, secret_key=READ_SECRET, base_url=URL, tracing_enabled=False)
    check("read key reads", reader.get_prompt("greet", max_retries=0).version == 2)
    try:
        reader.create_prompt(name="not-allowed", prompt="x")
        check("read key's create_prompt: 403", False, "accepted")
    except AccessDeniedError as e:
        check("read key's create_prompt: 403", e.status_code == 403 and e.body.get("error") == "ForbiddenError", e.body)
    missing = httpx.get(f"{URL}/v1/prompts/not-allowed", headers={"Authorization": f"Bearer {SECRET}"})
    check("nothing written by the refused create", missing.status_code == 404, missing.status_code)


@step("get_prompt(label=…) while an experiment splits the label")
def _():
    def v1_send(method, path, body):
        response = v1.request(method, path, json=body)
        response.raise_for_status()
        return response.json()

    v1_send("POST", "/v1/prompts", {"name": "split/me"})
    v1_send("POST", "/v1/prompts/split%2Fme/versions", {"template": "Control {{name}}"})
    v1_send("POST", "/v1/prompts/split%2Fme/versions", {"template": "Treatment {{name}}"})
    v1_send("PUT", "/v1/prompts/split%2Fme/labels/production", {"version": "1.0.0"})
    experiment = v1_send(
        "POST",
        "/v1/prompts/split%2Fme/experiments",
        {
            "label": "production",
            "variants": [{"version": "1.0.0", "weight": 50}, {"version": "1.0.1", "weight": 50}],
            "metric": "thumbs_up",
            "direction": "higher",
            "min_samples": 10,
        },
    )
    seen = {1: 0, 2: 0}
    for _ in range(40):
        prompt = langfuse.get_prompt("split/me", label="production", cache_ttl_seconds=0, max_retries=0)
        expected = "Control {{name}}" if prompt.version == 1 else "Treatment {{name}}"
        check("a variant's own template", prompt.prompt == expected, (prompt.version, prompt.prompt))
        seen[prompt.version] = seen.get(prompt.version, 0) + 1
    served = [v["served"] for v in v1_get(f"/v1/experiments/{experiment['id']}")["variants"]]
    check("the SDK got the versions promptreg says it served", [seen[1], seen[2]] == served, (seen, served))
    v1_send("POST", f"/v1/experiments/{experiment['id']}/stop", {"promote": None})
    after = langfuse.get_prompt("split/me", label="production", cache_ttl_seconds=0, max_retries=0)
    check("after the stop, the label's own version", after.version == 1, after.version)


@step("tracing, flush and shutdown")
def _():
    prompt = langfuse.get_prompt("greet")
    with langfuse.start_as_current_observation(
        name="answer", as_type="generation", model="gpt-4o-mini", input={"name": "Ada"}, prompt=prompt
    ) as generation:
        generation.update(output=prompt.compile(name="Ada"), usage_details={"input": 3, "output": 4})
    capture.records.clear()
    langfuse.flush()
    langfuse.shutdown()
    loud = [f"{r.name} {r.levelname}: {r.getMessage()}" for r in capture.records]
    check("flush() and shutdown() log nothing at WARNING or above", not loud, loud)


print(f"{len(failures)} failed" if failures else "all checks passed")
sys.exit(min(len(failures), 100))
