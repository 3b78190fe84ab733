#!/usr/bin/env python3
"""Opens N keep-alive connections to a proxy, sends one request on each, reads the response, keeps
them all open and idle, then prints: connections, the proxy's resident memory (VmRSS, KiB, with its
children) before and after.
Usage: idle_conns.py HOST:PORT PID [N]"""
import asyncio, os, resource, sys

# Seconds the connections sit idle before memory is read (the same for every proxy).
SETTLE = float(os.environ.get("SETTLE", "3"))
# Connections opened at once (a burst by default; a trickle shows live memory without the
# allocator pages a burst leaves partly used).
CONCURRENCY = int(os.environ.get("CONCURRENCY", "200"))

async def one(host, port, sem, conns):
    async with sem:
        r, w = await asyncio.open_connection(host, port)
        w.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await r.readexactly(length)
        conns.append((r, w))

def rss(pid):
    """VmRSS of the process and its children (nginx serves from a worker child), in KiB."""
    total = 0
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(c) for c in f.read().split()]
    except OSError:
        pass
    for p in pids:
        with open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total

async def main():
    host, port = sys.argv[1].rsplit(":", 1)
    pid, n = int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 10000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 1000)), hard))
    before = rss(pid)
    conns, sem = [], asyncio.Semaphore(CONCURRENCY)
    await asyncio.gather(*(one(host, int(port), sem, conns) for _ in range(n)))
    await asyncio.sleep(SETTLE)
    after = rss(pid)
    print(f"{len(conns)} {before} {after}")
    for _, w in conns:
        w.close()

asyncio.run(main())
