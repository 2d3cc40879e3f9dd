"""Drive toolgate's /mcp endpoint with the official Python MCP client (mcp==2.3.0).

Run with the interpreter printed by `tests/clients/setup.sh python`. Environment:

  TOOLGATE_MCP_URL          the endpoint, e.g. http://127.0.0.1:PORT/mcp; with ?session=<id> the
                            calls must run in that (already open) toolgate session
  TOOLGATE_KEY              API key, sent as `Authorization: Bearer <key>`
  TOOLGATE_MCP_MODE         `legacy` (initialize, 2025-11-25) or `auto` (negotiates 2026-07-28); default auto
  TOOLGATE_DENIED_TOOL      a tool the key's policy forbids (default http.fetch)
  TOOLGATE_DENIED_TOOL_INPUT  its JSON input (default {"url": "https://example.com"})
  TOOLGATE_SLOW_TOOL        optional: a tool that runs for several seconds; cancelled after ~1 s. The
                            call must return within 5 s and its task end `cancelled` (checked with
                            GET <root>/v1/sessions/<id>/tasks, <root> being the URL without /mcp)
  TOOLGATE_SLOW_TOOL_INPUT  its JSON input (default {})
  TOOLGATE_LOG_TOOL         optional: a tool that logs and/or reports progress
  TOOLGATE_LOG_TOOL_INPUT   its JSON input (default {})

Each step asserts; the first failure prints `FAIL [step] ...` on stderr and exits 1 (2 for bad
usage). On success the last line of stdout is one JSON object:
  {"protocol", "session", "tasks": {"write", "read", "denied"}, "progress", "logs", ...}
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

STEP_TIMEOUT = 60.0  # seconds; a server that hangs fails the step instead of the whole test run
CANCEL_AFTER = 1.0
CANCEL_BOUND = 5.0  # a cancelled call must be back this soon (the slow tool should run far longer)


class Failure(Exception):
    pass


CURRENT = {"step": "connect"}  # the step running, for errors the checks did not anticipate


def fail(step: str, msg: str) -> None:
    raise Failure(f"[{step}] {msg}")


def check(cond: Any, step: str, msg: str) -> None:
    if not cond:
        fail(step, msg)


def env_json(name: str, default: Any) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        print(f"toolgate: {name} is not JSON: {e}", file=sys.stderr)
        sys.exit(2)


def text_of(result: Any) -> str:
    return "\n".join(getattr(b, "text", "") for b in result.content if getattr(b, "type", None) == "text")


def dump(result: Any) -> str:
    return json.dumps(result.model_dump(by_alias=True, exclude_none=True, mode="json"))[:2000]


def api_base(mcp_url: str) -> str:
    """toolgate's API root for an MCP endpoint URL (the endpoint is `<root>/mcp`)."""
    parts = urlsplit(mcp_url)
    path = parts.path.rstrip("/")
    path = path[: path.rfind("/")] if "/" in path else ""
    return f"{parts.scheme}://{parts.netloc}{path}"


def meta_of(step: str, result: Any) -> tuple[str, str]:
    meta = result.meta or {}
    session, task = meta.get("toolgate/session"), meta.get("toolgate/task")
    check(isinstance(session, str) and session, step, f"result _meta has no toolgate/session: {dump(result)}")
    check(isinstance(task, str) and task, step, f"result _meta has no toolgate/task: {dump(result)}")
    check("toolgate/state" in meta, step, f"result _meta has no toolgate/state: {dump(result)}")
    return session, task


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    mode = cfg["mode"]
    counts = {"progress": 0, "logs": 0}
    log_records: list[Any] = []

    async def on_log(params: Any) -> None:
        counts["logs"] += 1
        log_records.append({"level": str(params.level), "logger": params.logger, "data": params.data})

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        counts["progress"] += 1

    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {cfg['key']}"},
        timeout=httpx2.Timeout(30, read=300),
    )
    client = Client(
        streamable_http_client(cfg["url"], http_client=http),
        mode=mode,
        logging_callback=on_log,
        # Opt in to logs per request on 2026-07-28; ignored by legacy connections (setLevel below).
        log_level="debug",
        # Every call must reach the server.
        cache=None,
    )
    out: dict[str, Any] = {}
    async with http, client as c:
        out["protocol"] = c.protocol_version
        want = "2025-11-25" if mode == "legacy" else "2026-07-28"
        check(c.protocol_version == want, "connect", f"negotiated {c.protocol_version!r}, expected {want!r}")

        if mode == "legacy":
            with anyio.fail_after(STEP_TIMEOUT), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await c.set_logging_level("debug")

        # a. tools/list
        step = CURRENT["step"] = "list"
        with anyio.fail_after(STEP_TIMEOUT):
            tools = {t.name: t for t in (await c.list_tools()).tools}
        for name in ("fs.read", "fs.write"):
            check(name in tools, step, f"{name} missing from tools/list: {sorted(tools)}")
            schema = tools[name].input_schema
            check(
                isinstance(schema, dict) and schema.get("type") == "object",
                step,
                f"{name} inputSchema is not an object schema: {schema!r}",
            )
        check(cfg["denied"] not in tools, step, f"denied tool {cfg['denied']} is listed: {sorted(tools)}")
        for opt in ("slow", "log"):
            if cfg[opt]:
                check(cfg[opt] in tools, step, f"{cfg[opt]} ({opt} tool) missing from tools/list: {sorted(tools)}")

        # b. fs.write then fs.read round trip
        step = CURRENT["step"] = "write"
        content = f"written by the Python MCP client (mcp 2.3.0), mode {mode}\n"
        with anyio.fail_after(STEP_TIMEOUT):
            r = await c.call_tool("fs.write", {"path": "from-python.txt", "content": content})
        check(not r.is_error, step, f"fs.write failed: {dump(r)}")
        session, write_task = meta_of(step, r)
        pinned = parse_qs(urlsplit(cfg["url"]).query).get("session")
        if pinned:
            check(session == pinned[0], step, f"?session={pinned[0]} on the URL, but the call ran in {session}")

        step = CURRENT["step"] = "read"
        with anyio.fail_after(STEP_TIMEOUT):
            r = await c.call_tool("fs.read", {"path": "from-python.txt"})
        check(not r.is_error, step, f"fs.read failed: {dump(r)}")
        s2, read_task = meta_of(step, r)
        check(s2 == session, step, f"toolgate session changed between calls: {session} then {s2}")
        got = r.structured_content.get("content") if isinstance(r.structured_content, dict) else None
        if got is None:
            try:
                got = json.loads(text_of(r)).get("content")
            except (json.JSONDecodeError, AttributeError):
                got = None
        check(got == content, step, f"fs.read returned {got!r}, wrote {content!r}: {dump(r)}")

        # c. a tool the policy forbids: a tool result with isError, not a protocol error
        step = CURRENT["step"] = "denied"
        try:
            with anyio.fail_after(STEP_TIMEOUT):
                r = await c.call_tool(cfg["denied"], cfg["denied_input"])
        except MCPError as e:
            fail(step, f"{cfg['denied']} raised a JSON-RPC error {e.code} {e.message!r}; expected a result with isError")
        check(r.is_error, step, f"{cfg['denied']} was not refused: {dump(r)}")
        check("denied" in text_of(r), step, f"refusal text does not say denied: {dump(r)}")
        s3, denied_task = meta_of(step, r)
        check(s3 == session, step, f"toolgate session changed between calls: {session} then {s3}")

        # d. unknown tool: a JSON-RPC error -32602
        step = CURRENT["step"] = "unknown"
        try:
            with anyio.fail_after(STEP_TIMEOUT):
                r = await c.call_tool("nope.nothing", {})
        except MCPError as e:
            check(e.code == -32602, step, f"unknown tool gave error {e.code} {e.message!r}, expected -32602")
        else:
            fail(step, f"nope.nothing did not raise a JSON-RPC error: {dump(r)}")

        # e. cancellation: cancel the slow tool from the client after ~1 s
        if cfg["slow"]:
            step = CURRENT["step"] = "cancel"
            # The server side is checked through toolgate's REST API, next to the endpoint.
            tasks_url = f"{api_base(cfg['url'])}/v1/sessions/{session}/tasks"

            async def slow_tasks() -> dict[str, str]:
                resp = await http.get(tasks_url, params={"tool": cfg["slow"], "limit": 50})
                check(resp.status_code == 200, step, f"GET {tasks_url}: {resp.status_code} {resp.text[:300]}")
                return {t["id"]: t["state"] for t in resp.json()["tasks"]}

            before = await slow_tasks()
            started = time.monotonic()
            finished: Any = None
            with anyio.move_on_after(CANCEL_AFTER) as scope:
                finished = await c.call_tool(cfg["slow"], cfg["slow_input"])
            elapsed = time.monotonic() - started
            check(
                scope.cancelled_caught,
                step,
                f"{cfg['slow']} finished before it could be cancelled ({elapsed:.2f} s): "
                f"{dump(finished) if finished is not None else None}",
            )
            check(elapsed < CANCEL_BOUND, step, f"cancelling {cfg['slow']} took {elapsed:.2f} s")
            out["cancel_seconds"] = round(elapsed, 3)
            # The connection must still work after a cancelled request.
            with anyio.fail_after(STEP_TIMEOUT):
                r = await c.call_tool("fs.read", {"path": "from-python.txt"})
            check(not r.is_error, step, f"fs.read after the cancel failed: {dump(r)}")
            out["after_cancel_seconds"] = round(time.monotonic() - started - elapsed, 3)
            # The server must have cancelled the task (not left it running to its end).
            new: dict[str, str] = {}
            with anyio.move_on_after(CANCEL_BOUND):
                while True:
                    new = {k: v for k, v in (await slow_tasks()).items() if k not in before}
                    if new and all(v not in ("queued", "running") for v in new.values()):
                        break
                    await anyio.sleep(0.1)
            check(new, step, f"no {cfg['slow']} task of this call in {tasks_url}")
            check(
                all(v == "cancelled" for v in new.values()),
                step,
                f"the server did not cancel the task within {CANCEL_BOUND:.0f} s: {new}",
            )
            out["cancelled_tasks"] = new

        # f. logging and progress (counted and reported, not asserted)
        if cfg["log"]:
            step = CURRENT["step"] = "log"
            with anyio.fail_after(STEP_TIMEOUT):
                r = await c.call_tool(cfg["log"], cfg["log_input"], progress_callback=on_progress)
            check(not r.is_error, step, f"{cfg['log']} failed: {dump(r)}")
            # Notifications may trail the response by a moment.
            await anyio.sleep(0.3)
            out["log_records"] = log_records[:5]
        else:
            counts = {"progress": None, "logs": None}  # type: ignore[dict-item]

    out.update(
        session=session,
        tasks={"write": write_task, "read": read_task, "denied": denied_task},
        progress=counts["progress"],
        logs=counts["logs"],
    )
    return out


def main() -> int:
    url = os.environ.get("TOOLGATE_MCP_URL")
    key = os.environ.get("TOOLGATE_KEY")
    mode = os.environ.get("TOOLGATE_MCP_MODE", "auto")
    if not url or not key or mode not in ("legacy", "auto"):
        print("toolgate: set TOOLGATE_MCP_URL, TOOLGATE_KEY and TOOLGATE_MCP_MODE=legacy|auto", file=sys.stderr)
        return 2
    cfg = {
        "url": url,
        "key": key,
        "mode": mode,
        "denied": os.environ.get("TOOLGATE_DENIED_TOOL") or "http.fetch",
        "denied_input": env_json("TOOLGATE_DENIED_TOOL_INPUT", {"url": "https://example.com"}),
        "slow": os.environ.get("TOOLGATE_SLOW_TOOL") or None,
        "slow_input": env_json("TOOLGATE_SLOW_TOOL_INPUT", {}),
        "log": os.environ.get("TOOLGATE_LOG_TOOL") or None,
        "log_input": env_json("TOOLGATE_LOG_TOOL_INPUT", {}),
    }
    try:
        out = anyio.run(run, cfg)
    except Exception as e:  # noqa: BLE001 - every failure becomes one clear line
        while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
            e = e.exceptions[0]
        if isinstance(e, Failure):
            print(f"FAIL {e}", file=sys.stderr)
        elif isinstance(e, TimeoutError):
            print(f"FAIL [{CURRENT['step']}] took longer than {STEP_TIMEOUT:.0f} s (server hang?)", file=sys.stderr)
        else:
            code = f" {e.code}" if isinstance(e, MCPError) else ""
            print(f"FAIL [{CURRENT['step']}] unexpected {type(e).__name__}{code}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
