"""MLflow's real client (mlflow-skinny) against a running promptreg.

Started by the Rust test `mlflow::mlflow_client_works_unchanged`
(tests/api/mlflow.rs), which serves promptreg on a local port, seeds through
/v1 and passes:

  PROMPTREG_URL              base URL of the server
  ADMIN_KEY                  an admin key (sent as MLFLOW_TRACKING_TOKEN)
  READ_KEY_ID, READ_KEY      a read-only key's id and secret (sent as Basic
                             credentials: MLFLOW_TRACKING_USERNAME / PASSWORD)
  GATED_PROMPT, GATED_LABEL  a prompt this script creates and a label of it
                             that a gate guards (set up before it exists)

Seeded through /v1: the prompt `from-v1` (text, label `production` at 1.0.0).

Every check that fails is printed; the exit status is the number of failures
(capped), 0 when all pass.
"""

import json
import os
import sys
import traceback

import requests

URL = os.environ["PROMPTREG_URL"]
ADMIN_KEY = os.environ["ADMIN_KEY"]
READ_KEY_ID = os.environ["READ_KEY_ID"]
READ_KEY = os.environ["READ_KEY"]
GATED_PROMPT = os.environ["GATED_PROMPT"]
GATED_LABEL = os.environ["GATED_LABEL"]

os.environ["MLFLOW_TRACKING_URI"] = URL
os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN_KEY
os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)
# No retries of refused requests: an error must show at once.
os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"

import mlflow  # noqa: E402  (reads the environment above)
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

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


def raises(what, fn, error_code, mentions=""):
    """`fn()` raises an MlflowException with `error_code` whose message holds `mentions`."""
    try:
        fn()
    except MlflowException as e:
        check(
            what,
            e.error_code == error_code and mentions in e.message,
            f"{e.error_code}: {e.message}",
        )
        return
    check(what, False, "no exception")


# /v1, to see what MLflow's calls did (requests comes with MLflow's client).
v1 = requests.Session()
v1.headers["Authorization"] = f"Bearer {ADMIN_KEY}"


def v1_get(path):
    response = v1.get(URL + path, timeout=10)
    response.raise_for_status()
    return response.json()


def render(name, ref, variables):
    response = v1.post(
        f"{URL}/v1/prompts/{name}/render", json={"ref": ref, "variables": variables}, timeout=10
    )
    response.raise_for_status()
    return response.json()


RESPONSE_FORMAT = {"type": "object", "properties": {"answer": {"type": "string"}}}
MODEL_CONFIG = {"model_name": "gpt-4o-mini", "max_tokens": 120, "temperature": 0.2}
TEXT = "Hello {{ name }}, welcome to {{place}}!"
CHAT = [
    {"role": "system", "content": "You are a {{ style }} assistant."},
    {"role": "user", "content": "{{question}}"},
]


@step("register a text prompt with tags, a commit message, response_format and model_config")
def _():
    pv = mlflow.genai.register_prompt(
        name="greeting",
        template=TEXT,
        commit_message="First greeting",
        tags={"git_sha": "4f2a9c1", "team": "support"},
        response_format=RESPONSE_FORMAT,
        model_config=MODEL_CONFIG,
    )
    check("the first version is number 1", pv.version == 1, pv.version)
    check("the template comes back", pv.template == TEXT, pv.template)
    check("the commit message comes back", pv.commit_message == "First greeting", pv.commit_message)
    check("response_format comes back", pv.response_format == RESPONSE_FORMAT, pv.response_format)
    check("model_config comes back", pv.model_config == MODEL_CONFIG, pv.model_config)
    check(
        "version tags come back",
        pv.tags.get("git_sha") == "4f2a9c1" and pv.tags.get("team") == "support",
        pv.tags,
    )

    # The same version through /v1: every field where promptreg keeps it.
    version = v1_get("/v1/prompts/greeting/versions/1.0.0")
    check("/v1 sees the template", version.get("template") == TEXT, version)
    check("/v1 keeps model_config as given", version.get("model_config") == MODEL_CONFIG, version)
    check("/v1 keeps response_format as output_schema", version.get("output_schema") == RESPONSE_FORMAT, version)
    check("/v1 keeps the commit message", version.get("message") == "First greeting", version)
    check(
        "/v1 keeps unknown version tags in metadata",
        version.get("metadata", {}).get("git_sha") == "4f2a9c1",
        version.get("metadata"),
    )
    prompt = v1_get("/v1/prompts/greeting")
    check(
        "/v1 keeps prompt tags as key=value",
        sorted(prompt.get("tags", [])) == ["git_sha=4f2a9c1", "team=support"],
        prompt,
    )


@step("registering identical content twice answers the same version")
def _():
    again = mlflow.genai.register_prompt(
        name="greeting",
        template=TEXT,
        commit_message="Same again",
        tags={"git_sha": "4f2a9c1", "team": "support"},
        response_format=RESPONSE_FORMAT,
        model_config=MODEL_CONFIG,
    )
    check("identical content is version 1 again", again.version == 1, again.version)
    versions = v1_get("/v1/prompts/greeting/versions")["items"]
    check("/v1 holds one version", len(versions) == 1, versions)

    second = mlflow.genai.register_prompt(
        name="greeting", template="Hi {{ name }} from {{ place }}.", commit_message="Shorter"
    )
    check("changed content is version 2", second.version == 2, second.version)


@step("register a chat prompt and format it as promptreg renders it")
def _():
    pv = mlflow.genai.register_prompt(
        name="assistant",
        template=CHAT,
        commit_message="Chat",
        model_config={"model_name": "claude-sonnet", "max_tokens": 300},
    )
    loaded = mlflow.genai.load_prompt("prompts:/assistant/1")
    check("a chat prompt loads as chat", not loaded.is_text_prompt and loaded.template == CHAT, loaded.template)
    variables = {"style": "friendly", "question": "Where is my order?"}
    formatted = loaded.format(**variables)
    rendered = render("assistant", "1.0.0", variables)
    check(
        "format() of a chat prompt equals promptreg's render",
        formatted == [{"role": m["role"], "content": m["content"]} for m in rendered["messages"]],
        (formatted, rendered),
    )
    check(
        "model_config keys are kept",
        pv.model_config == {"model_name": "claude-sonnet", "max_tokens": 300},
        pv.model_config,
    )


@step("load by version, by alias and by bare name; format() equals promptreg's render")
def _():
    by_version = mlflow.genai.load_prompt("prompts:/greeting/1")
    check("by version", by_version.version == 1 and by_version.template == TEXT, by_version)
    variables = {"name": "Ada", "place": "Paris"}
    check(
        "format() of a text prompt equals promptreg's render",
        by_version.format(**variables) == render("greeting", "1.0.0", variables)["text"],
        (by_version.format(**variables), render("greeting", "1.0.0", variables)),
    )

    mlflow.genai.set_prompt_alias("greeting", alias="production", version=1)
    by_alias = mlflow.genai.load_prompt("prompts:/greeting@production")
    check("by alias", by_alias.version == 1, by_alias.version)
    check("the version lists its alias", "production" in by_alias.aliases, by_alias.aliases)
    latest = mlflow.genai.load_prompt("greeting")
    check("a bare name is @latest", latest.version == 2, latest.version)
    check(
        "@latest formats as /v1 renders latest",
        latest.format(name="Ada", place="Rome") == render("greeting", "latest", {"name": "Ada", "place": "Rome"})["text"],
        latest.template,
    )
    check(
        "with a version argument",
        mlflow.genai.load_prompt("greeting", version=2).version == 2,
    )

    history = v1_get("/v1/prompts/greeting/labels/production/history")["items"]
    check("the alias move is in /v1 label history", history and history[0].get("to") == "1.0.0", history)

    mlflow.genai.set_prompt_alias("greeting", alias="production", version=2)
    moved = mlflow.genai.load_prompt("prompts:/greeting@production", cache_ttl_seconds=0)
    check("moving the alias moves what loads", moved.version == 2, moved.version)
    history = v1_get("/v1/prompts/greeting/labels/production/history")["items"]
    check(
        "the second move is in /v1 label history",
        [m.get("to") for m in history[:2]] == ["1.0.1", "1.0.0"],
        history,
    )

    mlflow.genai.set_prompt_alias("greeting", alias="staging", version=1)
    MlflowClient().delete_prompt_alias("greeting", "staging")
    labels = [label["name"] for label in v1_get("/v1/prompts/greeting/labels")["items"]]
    check("delete_prompt_alias deletes the label", "staging" not in labels, labels)
    raises(
        "a missing alias is RESOURCE_DOES_NOT_EXIST",
        lambda: mlflow.genai.load_prompt("prompts:/greeting@staging", cache_ttl_seconds=0),
        "RESOURCE_DOES_NOT_EXIST",
    )
    check(
        "allow_missing answers None for a missing alias",
        mlflow.genai.load_prompt("prompts:/greeting@staging", allow_missing=True, cache_ttl_seconds=0) is None,
    )
    raises(
        "a missing version raises",
        lambda: mlflow.genai.load_prompt("prompts:/greeting/9"),
        "RESOURCE_DOES_NOT_EXIST",
    )


@step("a gate refuses set_prompt_alias with promptreg's reason")
def _():
    mlflow.genai.register_prompt(name=GATED_PROMPT, template="Gated {{ x }}")
    raises(
        "the gated alias is refused with the gate's reason",
        lambda: mlflow.genai.set_prompt_alias(GATED_PROMPT, alias=GATED_LABEL, version=1),
        "INVALID_PARAMETER_VALUE",
        "has no succeeded evaluation",
    )
    labels = [label["name"] for label in v1_get(f"/v1/prompts/{GATED_PROMPT}/labels")["items"]]
    check("the gated label did not move", GATED_LABEL not in labels, labels)


@step("search_prompts filters by name and tags and pages")
def _():
    for suffix in ["a", "b", "c"]:
        mlflow.genai.register_prompt(name=f"page-{suffix}", template=f"Page {suffix}", tags={"kind": "paged"})
    # The client pages explicitly; the fluent API walks every page itself.
    client = MlflowClient()
    first = client.search_prompts(filter_string="name LIKE 'page-%'", max_results=2)
    check("the first page holds two", [p.name for p in first] == ["page-a", "page-b"], [p.name for p in first])
    check("a token for the next page", bool(first.token), first.token)
    second = client.search_prompts(filter_string="name LIKE 'page-%'", max_results=2, page_token=first.token)
    check("the second page holds the rest", [p.name for p in second] == ["page-c"], [p.name for p in second])
    check("no token after the last page", not second.token, second.token)

    exact = mlflow.genai.search_prompts(filter_string="name = 'greeting'")
    check("name = matches one", [p.name for p in exact] == ["greeting"], [p.name for p in exact])
    check(
        "prompt tags come back (without is_prompt or the client's experiment links)",
        exact[0].tags == {"team": "support", "git_sha": "4f2a9c1"},
        exact[0].tags,
    )
    walked = mlflow.genai.search_prompts(filter_string="name LIKE 'page-%'", max_results=3)
    check("the fluent search takes every page", [p.name for p in walked] == ["page-a", "page-b", "page-c"], walked)
    tagged = mlflow.genai.search_prompts(filter_string="tags.kind = 'paged' AND name LIKE '%b'")
    check("tags.KEY = with AND", [p.name for p in tagged] == ["page-b"], [p.name for p in tagged])
    everything = [p.name for p in mlflow.genai.search_prompts()]
    check("no filter lists every prompt, /v1's too", {"greeting", "assistant", "from-v1"} <= set(everything), everything)
    raises(
        "an unsupported filter names what is not supported",
        lambda: mlflow.genai.search_prompts(filter_string="name != 'greeting'"),
        "INVALID_PARAMETER_VALUE",
        "!=",
    )


@step("a prompt registered through /v1 loads through MLflow")
def _():
    loaded = mlflow.genai.load_prompt("prompts:/from-v1@production")
    check("by its label", loaded.version == 1, loaded.version)
    variables = {"name": "Grace"}
    check(
        "format() equals promptreg's render",
        loaded.format(**variables) == render("from-v1", "production", variables)["text"],
        loaded.template,
    )


@step("names and models promptreg refuses")
def _():
    raises(
        "a name against promptreg's rule is refused naming the rule",
        lambda: mlflow.genai.register_prompt(name="Upper_Case", template="x"),
        "INVALID_PARAMETER_VALUE",
        "name",
    )
    raises(
        "a registered model that is no prompt is refused",
        lambda: MlflowClient().create_registered_model("plain-model"),
        "INVALID_PARAMETER_VALUE",
        "promptreg stores prompts only",
    )


@step("a wrong token is 401; a read key's register_prompt is 403")
def _():
    os.environ["MLFLOW_TRACKING_TOKEN"] = "pr_wrong00000000000000000000000000000000"
    try:
        raises(
            "a wrong token is UNAUTHENTICATED",
            lambda: mlflow.genai.load_prompt("prompts:/greeting/1", cache_ttl_seconds=0),
            "UNAUTHENTICATED",
        )
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    os.environ["MLFLOW_TRACKING_USERNAME"] = READ_KEY_ID
    os.environ["MLFLOW_TRACKING_PASSWORD"] = READ_KEY
    try:
        loaded = mlflow.genai.load_prompt("prompts:/greeting/2", cache_ttl_seconds=0)
        check("a read key loads with Basic credentials", loaded.version == 2, loaded.version)
        raises(
            "a read key's register_prompt is PERMISSION_DENIED",
            lambda: mlflow.genai.register_prompt(name="greeting", template="Not mine {{ x }}"),
            "PERMISSION_DENIED",
            "write",
        )
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
        os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)
        os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN_KEY
    versions = v1_get("/v1/prompts/greeting/versions")["items"]
    check("the refused register wrote nothing", len(versions) == 2, len(versions))


print(json.dumps({"failures": failures}))
sys.exit(min(len(failures), 100))
