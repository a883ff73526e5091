#!/usr/bin/env python3
"""Keeps the Rust code the size a reader can hold: no function over 100 lines and no file over
700 lines, counting non-test code only (files named tests.rs, tests/ directories and
`#[cfg(test)]` items are left out). The few functions that are tables (one arm per Kafka API or
error code) are listed in TABLES with why; anything else over the limit fails the check.

Usage: tests/check-size.py [ROOT]   (default: the repository holding this script)
"""

import os
import re
import sys

MAX_FN_LINES = 100
MAX_FILE_LINES = 700

# (path, function): long because they are tables, one arm per protocol case, not logic.
TABLES = {
    ("agent/src/decode/request.rs", "request"): "one arm per Kafka request type",
    ("agent/src/decode/response.rs", "response"): "one arm per Kafka response type",
    ("tests/src/manifests.rs", "mistakes"): "one entry per mistake users make in a fault",
}

CRATES = ["agent", "crds", "operator", "daemon", "tests"]


def strip(text):
    """The text with comments, strings and char literals blanked (newlines kept), so braces
    and keywords are only those of the code."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        two = text[i : i + 2]
        if two == "//":
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif two == "/*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            j = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"' or (c == "b" and text[i + 1 : i + 2] == '"'):
            j = i + (2 if c == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:  # a lifetime
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def block_end(code, start):
    """Index just past the `}` closing the first `{` at or after `start` (or past a `;` that
    comes first: an item without a body)."""
    depth = 0
    for j in range(start, len(code)):
        ch = code[j]
        if ch == ";" and depth == 0:
            return j + 1
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(code)


def check_file(root, path, problems):
    with open(os.path.join(root, path), encoding="utf-8") as f:
        text = f.read()
    code = strip(text)
    test_ranges = []
    for m in re.finditer(r"#\[cfg\(test\)\]", code):
        test_ranges.append((m.start(), block_end(code, m.end())))

    def in_tests(pos):
        return any(a <= pos < b for a, b in test_ranges)

    def line_of(pos):
        return code.count("\n", 0, pos) + 1

    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    test_lines = sum(line_of(b) - line_of(a) + 1 for a, b in test_ranges)
    if lines - test_lines > MAX_FILE_LINES:
        problems.append(f"{path}: {lines - test_lines} lines of non-test code (max {MAX_FILE_LINES})")
    for m in re.finditer(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)", code):
        if in_tests(m.start()):
            continue
        end = block_end(code, m.end())
        length = line_of(end - 1) - line_of(m.start()) + 1
        if length > MAX_FN_LINES and (path, m.group(1)) not in TABLES:
            problems.append(f"{path}:{line_of(m.start())}: fn {m.group(1)} is {length} lines (max {MAX_FN_LINES})")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(here)
    problems = []
    for crate in CRATES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, crate)):
            rel = os.path.relpath(dirpath, root)
            dirnames[:] = [d for d in dirnames if d not in ("target", "tests") or rel == "tests"]
            for name in sorted(filenames):
                if not name.endswith(".rs") or name == "tests.rs":
                    continue
                path = os.path.join(rel, name)
                # The end-to-end tests are tests through and through.
                if path.startswith("tests/tests/"):
                    continue
                check_file(root, path, problems)
    for problem in problems:
        print(f"check-size: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print("check-size: every function is at most 100 lines, every file at most 700 lines of non-test code")


if __name__ == "__main__":
    main()
