"""textstats: a toolgate tool plugin written in Python.

Tools:
  count   lines, words and characters of a text, and its most frequent words
  search  the lines of a text that match a regular expression

Built into a WebAssembly component of the `tool` world (wit/tool.wit) by
componentize-py 0.25.1, which bundles a CPython for the guest:

    plugins/build-other-languages.sh --only python     # -> target/other-languages/textstats.wasm

which runs, with the pinned componentize-py from its venv (no VIRTUAL_ENV set):

    componentize-py -d wit -w tool componentize app -p plugins/python/textstats -o textstats.wasm

The module must be named by `componentize ... app` and define a class named `WitWorld`.
An exception that escapes `call` traps the component (the task fails as `trap`), so
`call` turns every error into a `tool-error`: `invalid-input` for input the tool cannot
use, `failed` for anything else.
"""

import json
import re
from collections import Counter

import wit_world
from componentize_py_types import Err
from wit_world.imports import host, types

TOP_DEFAULT = 5
# A word: letters or digits, with inner apostrophes or hyphens ("don't", "well-known").
WORD = re.compile(r"\w+(?:['\u2019-]\w+)*")
PROGRESS_EVERY = 1000  # lines between two progress reports


class InvalidInput(Exception):
    """Input the tool cannot use; the message says what to fix."""


def schema(properties: dict, required: list) -> str:
    return json.dumps(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }
    )


TEXT = {"type": "string", "description": "The text to read."}

TOOLS = [
    types.ToolInfo(
        name="count",
        description=(
            "Count the lines, words and characters (Unicode code points) of a text and "
            "list its most frequent words, case-insensitively."
        ),
        input_schema=schema(
            {
                "text": TEXT,
                "top": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 100,
                    "default": TOP_DEFAULT,
                    "description": "How many of the most frequent words to list.",
                },
            },
            ["text"],
        ),
    ),
    types.ToolInfo(
        name="search",
        description=(
            "Find the lines of a text that match a regular expression (Python syntax); "
            "gives each line's number (from 1) and text."
        ),
        input_schema=schema(
            {
                "text": TEXT,
                "pattern": {"type": "string", "minLength": 1, "description": "A regular expression."},
                "ignore_case": {"type": "boolean", "default": False},
                "max_matches": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
            },
            ["text", "pattern"],
        ),
    ),
]


def parse(input: str) -> dict:
    try:
        value = json.loads(input)
    except ValueError as e:
        raise InvalidInput(f"the input is not JSON: {e}")
    if not isinstance(value, dict):
        raise InvalidInput("the input must be a JSON object")
    return value


def field(value: dict, name: str, kind, default=None):
    """VALUE[NAME] checked to be of KIND; DEFAULT when absent (None: required)."""
    if name not in value:
        if default is None:
            raise InvalidInput(f"`{name}` is required")
        return default
    item = value[name]
    # bool is an int in Python, but not an integer in JSON Schema.
    if not isinstance(item, kind) or (kind is int and isinstance(item, bool)):
        raise InvalidInput(f"`{name}` must be a {kind.__name__}")
    return item


def count(value: dict) -> dict:
    text = field(value, "text", str)
    top = field(value, "top", int, TOP_DEFAULT)
    if not 0 <= top <= 100:
        raise InvalidInput("`top` must be between 0 and 100")
    lines = text.splitlines()
    host.log(host.LogLevel.INFO, f"counting {len(text)} characters in {len(lines)} lines")
    words = Counter()
    total_words = 0
    for number, line in enumerate(lines, 1):
        found = [w.lower() for w in WORD.findall(line)]
        total_words += len(found)
        words.update(found)
        if number % PROGRESS_EVERY == 0:
            host.progress(number, len(lines), None)
    host.progress(len(lines), len(lines), f"counted {total_words} words")
    # Most frequent first; ties alphabetically, so the answer does not depend on order.
    frequent = sorted(words.items(), key=lambda item: (-item[1], item[0]))[:top]
    return {
        "lines": len(lines),
        "words": total_words,
        "characters": len(text),
        "distinct_words": len(words),
        "top_words": [{"word": w, "count": n} for w, n in frequent],
    }


def search(value: dict) -> dict:
    text = field(value, "text", str)
    pattern = field(value, "pattern", str)
    ignore_case = field(value, "ignore_case", bool, False)
    max_matches = field(value, "max_matches", int, 100)
    try:
        regex = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as e:
        raise InvalidInput(f"`pattern` is not a valid regular expression: {e}")
    matches = []
    truncated = False
    for number, line in enumerate(text.splitlines(), 1):
        if regex.search(line):
            if len(matches) == max_matches:
                truncated = True
                break
            matches.append({"line": number, "text": line})
    level = host.LogLevel.INFO if matches else host.LogLevel.WARN
    host.log(level, f"{len(matches)} matching lines for /{pattern}/")
    return {"matches": matches, "truncated": truncated}


RUN = {"count": count, "search": search}


class WitWorld(wit_world.WitWorld):
    def describe(self) -> list[types.ToolInfo]:
        return TOOLS

    def call(self, name: str, input: str) -> str:
        run = RUN.get(name)
        if run is None:
            raise Err(types.ToolError_UnknownTool(name))
        try:
            return json.dumps(run(parse(input)))
        except Err:
            raise
        except InvalidInput as e:
            raise Err(types.ToolError_InvalidInput(str(e)))
        except Exception as e:  # anything else would trap: report it as the tool's failure
            raise Err(types.ToolError_Failed(f"{name} failed: {type(e).__name__}: {e}"))
