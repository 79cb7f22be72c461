#!/usr/bin/env python3
"""Clang's thread-safety analysis over the code that shares state between threads.

The build uses GCC, which ignores the locking annotations (engine/common/mutex.h:
ABSL_GUARDED_BY, ABSL_EXCLUSIVE_LOCKS_REQUIRED). This test compiles each file below with clang++
-fsyntax-only -Wthread-safety -Werror=thread-safety, using the build's own compile command for it
(compile_commands.json), so touching a guarded member without its mutex fails the suite.

Usage: thread_safety_test.py --build BUILD_DIR --source SOURCE_DIR
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys

# Every file whose classes hold a sparsed::Mutex.
FILES = [
    "scheduler/engine_loop.cc",
    "server/call_state.cc",
    "server/oip_service.cc",
    "server/service.cc",
]


def clang_command(entry):
    """The build's command for one file, run by clang++ for the analysis only."""
    args = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
    out, skip = ["clang++"], False
    for a in args[1:]:
        if skip:
            skip = False
        elif a == "-o":
            skip = True
        elif a != "-c":
            out.append(a)
    return out + ["-fsyntax-only", "-Wthread-safety", "-Werror=thread-safety",
                  "-Wno-unknown-warning-option"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--source", required=True)
    a = ap.parse_args()
    if shutil.which("clang++") is None:
        print("FAIL clang++ is not installed (scripts/install-deps.sh installs it)")
        return 1
    with open(os.path.join(a.build, "compile_commands.json")) as f:
        commands = {os.path.realpath(e["file"]): e for e in json.load(f)}
    failures = 0
    for rel in FILES:
        entry = commands.get(os.path.realpath(os.path.join(a.source, rel)))
        if entry is None:
            print(f"FAIL {rel}: not in compile_commands.json")
            failures += 1
            continue
        r = subprocess.run(clang_command(entry), cwd=entry["directory"], capture_output=True,
                           text=True)
        ok = r.returncode == 0
        print(("ok   " if ok else "FAIL ") + rel + ("" if ok else "\n" + r.stderr[-3000:]),
              flush=True)
        failures += not ok
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
