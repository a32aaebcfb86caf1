#!/usr/bin/env python3
"""The fair failover probe of the benchmarks: it SIGKILLs the leader's process PID, then starts one
write every 10 ms against each survivor, each in its own thread with a 1 s timeout, so attempts
overlap and a slow one never delays the next; the first acknowledged write ends the clock. Prints
the milliseconds from the SIGKILL to that acknowledgement; exits 1 when none comes within 30 s.

    failover-probe.py etcd|flotilla PID PORT...

etcd is written through its HTTP/1.1 gateway (POST /v3/kv/put), Flotilla through its API
(PUT /v1/config/failover); both the same small write."""
import base64, http.client, json, os, signal, sys, threading, time

system, pid, ports = sys.argv[1], int(sys.argv[2]), [int(p) for p in sys.argv[3:]]
if system not in ("etcd", "flotilla") or not ports:
    sys.exit(__doc__)
done = threading.Event()
first = []
lock = threading.Lock()


def attempt(port):
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        if system == "etcd":
            body = json.dumps({"key": base64.b64encode(b"failover").decode(), "value": base64.b64encode(b"x").decode()})
            connection.request("POST", "/v3/kv/put", body, {"content-type": "application/json"})
        else:
            connection.request("PUT", "/v1/config/failover", '{"value": "x"}', {"content-type": "application/json"})
        response = connection.getresponse()
        response.read()
        if 200 <= response.status < 300:
            now = time.time_ns()
            with lock:
                if not first:
                    first.append(now)
            done.set()
    except Exception:
        pass


start_ns = time.time_ns()
os.kill(pid, signal.SIGKILL)
deadline = time.monotonic() + 30
while not done.is_set() and time.monotonic() < deadline:
    for port in ports:
        threading.Thread(target=attempt, args=(port,), daemon=True).start()
    done.wait(0.01)
if not first:
    print(f"failover-probe: no {system} write was acknowledged within 30 s", file=sys.stderr)
    sys.exit(1)
print(round((first[0] - start_ns) / 1e6))
