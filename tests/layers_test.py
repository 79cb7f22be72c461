#!/usr/bin/env python3
"""The layers are enforced by the build (cmake/SparsedLayer.cmake, docs/ARCHITECTURE.md).

For each case, a one-line source is compiled with the build's own command for a file of the
layer named (compile_commands.json), syntax only: an include of a header the layer may see must
compile, and an include that reaches upward must fail with "No such file or directory".

Usage: layers_test.py --build BUILD_DIR --source SOURCE_DIR
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

# (a file of the layer, the header included, whether it must compile)
CASES = [
    ("engine/model/config.cc", "engine/common/dtype.h", True),
    ("engine/model/config.cc", "engine/engine.h", False),
    ("engine/model/config.cc", "engine/backend/backend.h", False),
    ("engine/backend/cpu/cpu_ffn.cc", "engine/backend/ffn_types.h", True),
    ("engine/backend/cpu/cpu_ffn.cc", "engine/sparse/cett.h", False),
    ("engine/backend/cpu/cpu_ffn.cc", "engine/model/config.h", False),
    ("engine/engine.cc", "engine/sparse/cett.h", True),
    ("engine/engine.cc", "scheduler/engine_loop.h", False),
    ("scheduler/engine_loop.cc", "engine/engine.h", True),
    ("scheduler/engine_loop.cc", "server/service.h", False),
]


def command_for(entry, source_file):
    """The build's command for `entry`, compiling `source_file` instead, syntax only."""
    args = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("-o", "-MF", "-MT"):
            skip = True
        elif a in ("-c", "-MD") or os.path.realpath(a) == os.path.realpath(entry["file"]):
            continue
        else:
            out.append(a)
    return out + ["-fsyntax-only", source_file]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--source", required=True)
    a = ap.parse_args()
    with open(os.path.join(a.build, "compile_commands.json")) as f:
        commands = {os.path.realpath(e["file"]): e for e in json.load(f)}
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for layer_file, header, allowed in CASES:
            entry = commands.get(os.path.realpath(os.path.join(a.source, layer_file)))
            what = f"{layer_file} including {header}"
            if entry is None:
                print(f"FAIL {what}: {layer_file} is not in compile_commands.json")
                failures += 1
                continue
            src = os.path.join(tmp, "probe.cc")
            with open(src, "w") as f:
                f.write(f'#include "{header}"\n')
            r = subprocess.run(command_for(entry, src), cwd=entry["directory"],
                               capture_output=True, text=True)
            if allowed:
                ok = r.returncode == 0
                detail = "compiles" if ok else "does not compile:\n" + r.stderr[-2000:]
            else:
                ok = r.returncode != 0 and "No such file or directory" in r.stderr
                detail = ("fails: header not found" if ok else
                          "is not refused as missing:\n" + (r.stderr[-2000:] or "it compiled"))
            print(("ok   " if ok else "FAIL ") + f"{what} {detail}", flush=True)
            failures += not ok
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
