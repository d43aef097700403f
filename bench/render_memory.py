#!/usr/bin/env python3
"""Resident memory of a promptreg server after each of N stored prompts has
been rendered once (the caches are bounded, so memory must level off).

Usage: bench/render_memory.py [--prompts 10000] [--backend sqlite|postgres]
Builds nothing: run `cargo build --release` first. Talks only to 127.0.0.1.
Prints a markdown table row per checkpoint.
"""
import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.path.join(os.path.dirname(__file__), "..", "target", "release", "promptreg")
THREADS = 8
KEY = "pr_bench" + os.urandom(16).hex()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Client:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, path, body, expect):
        headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
        self.conn.request("POST", path, json.dumps(body), headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status not in expect:
            raise RuntimeError(f"POST {path}: {response.status} {data[:200]!r}")


def in_parallel(port, count, work):
    """Runs work(client, i) for i in range(count) on THREADS keep-alive connections."""
    errors = []

    def worker(offset):
        client = Client(port)
        try:
            for i in range(offset, count, THREADS):
                work(client, i)
        except Exception as e:  # reported after the join
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def seed(client, i):
    name = f"mem/p{i:05d}"
    client.post("/v1/prompts", {"name": name}, {201})
    template = f"Prompt {i}: hello {{{{name}}}}, welcome to {{{{place}}}}. " + "Context line. " * 20
    client.post(f"/v1/prompts/{name.replace('/', '%2F')}/versions",
                {"type": "text", "template": template, "labels": ["production"]}, {201})


def render(client, i):
    name = f"mem/p{i:05d}".replace("/", "%2F")
    client.post(f"/v1/prompts/{name}/render", {"variables": {"name": "Ada", "place": "Paris"}}, {200})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=10000)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp()
    if args.backend == "sqlite":
        url = f"sqlite://{tmp}/memory.db"
    else:
        db = "promptreg_bench_memory"
        subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-c", f"drop database if exists {db}",
                        "-c", f"create database {db}"], check=True)
        url = f"postgres://postgres@127.0.0.1:5432/{db}"
    port = free_port()
    # The admin key, and rate limits high enough not to be what is measured.
    limits = {f"PROMPTREG_RATE_LIMIT__{s}__{k}": "1000000" for s in ("READ", "WRITE", "PROMOTE") for k in ("PER_SECOND", "BURST")}
    env = dict(os.environ, DATABASE_URL=url, RUST_LOG="warn", PROMPTREG_INIT_ADMIN_KEY=KEY, **limits)
    server = subprocess.Popen([BIN, "serve", "--bind", f"127.0.0.1:{port}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        rows = [("started", rss_mib(server.pid), 0.0)]
        started = time.time()
        in_parallel(port, args.prompts, seed)
        rows.append((f"{args.prompts} prompts stored", rss_mib(server.pid), time.time() - started))
        started = time.time()
        in_parallel(port, args.prompts, render)
        rows.append((f"each rendered once", rss_mib(server.pid), time.time() - started))
        started = time.time()
        in_parallel(port, args.prompts, render)
        rows.append((f"each rendered twice", rss_mib(server.pid), time.time() - started))
        print(f"| backend | checkpoint | RSS (MiB) | seconds |")
        print(f"|---|---|---:|---:|")
        for label, rss, seconds in rows:
            print(f"| {args.backend} | {label} | {rss:.1f} | {seconds:.1f} |")
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
