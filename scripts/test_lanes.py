"""Runs the crate's test binaries in parallel lanes (see scripts/test).

The binaries come from `cargo test --no-run --message-format=json` (built already); the longest
expected first, each lane taking the next as soon as it is free. Expected times are the last
measured ones (`.ci/test-times.json`, rewritten after a full run with `TEST_RECORD=1`); a binary
not listed counts as 30 s.
"""

import json
import os
import subprocess
import sys
import threading
import time

LANES = int(os.environ.get("TEST_LANES", "2"))
ONLY = {n for n in os.environ.get("TEST_ONLY", "").split(",") if n}
TIMES_FILE = os.path.join(".ci", "test-times.json")
EXTRA = sys.argv[1:]


def binaries():
    out = subprocess.run(
        ["cargo", "test", "--locked", "--no-run", "--message-format=json"],
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ).stdout
    found = []
    for line in out.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg.get("profile", {}).get("test"):
            continue
        target = msg["target"]
        kind = target["kind"][0]
        name = target["name"] if kind == "test" else f"{kind}:{target['name']}"
        source = target["src_path"].split(os.getcwd() + os.sep, 1)[-1]
        found.append((name, source, msg["executable"]))
    return found


def main():
    try:
        with open(TIMES_FILE) as f:
            expected = json.load(f)
    except (OSError, ValueError):
        expected = {}
    queue = [b for b in binaries() if not ONLY or b[0] in ONLY]
    queue.sort(key=lambda b: -expected.get(b[0], 30.0))
    lock = threading.Lock()
    results = {}
    started = time.monotonic()

    def lane():
        while True:
            with lock:
                if not queue:
                    return
                name, source, exe = queue.pop(0)
            t = time.monotonic()
            proc = subprocess.run(
                [exe, "--show-output", *EXTRA],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
            took = time.monotonic() - t
            with lock:
                results[name] = (proc.returncode, took)
                print(f"\n     Running {source} ({exe})", flush=True)
                sys.stdout.write(proc.stdout)
                print(
                    f"     {name}: {'ok' if proc.returncode == 0 else 'FAILED'} in {took:.1f} s",
                    flush=True,
                )

    threads = [threading.Thread(target=lane) for _ in range(max(1, LANES))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Doc tests (none run by the binaries above).
    doc = subprocess.run(["cargo", "test", "--locked", "--doc", "--", *EXTRA])
    wall = time.monotonic() - started
    failed = sorted(n for n, (rc, _) in results.items() if rc != 0)
    print(f"\ntest binaries: {len(results)} in {wall:.0f} s wall ({LANES} lanes); per binary:")
    for name, (rc, took) in sorted(results.items(), key=lambda r: -r[1][1]):
        print(f"  {took:7.1f} s  {name}{'  FAILED' if rc else ''}")
    if os.environ.get("TEST_RECORD") and not ONLY and not EXTRA and not failed:
        with open(TIMES_FILE, "w") as f:
            json.dump({n: round(t, 1) for n, (_, t) in sorted(results.items())}, f, indent=1)
            f.write("\n")
    if failed or doc.returncode != 0:
        print(f"FAILED: {', '.join(failed) or 'doc tests'}")
        sys.exit(1)


if __name__ == "__main__":
    main()
