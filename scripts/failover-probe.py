#!/usr/bin/env python3
"""The fair failover probe of the benchmarks: it takes the leader away — SIGKILLs its process PID,
or cuts its host off the network (`scripts/testhosts.sh cut PREFIX I`) — then starts one write
every 10 ms against each survivor, each in its own thread with a 1 s timeout, so attempts overlap
and a slow one never delays the next; the first acknowledged write ends the clock. Prints the
milliseconds from the loss to that acknowledgement; exits 1 when none comes within 30 s.

    failover-probe.py etcd|flotilla kill:PID|cut:PREFIX:I [HOST:]PORT...   (HOST: 127.0.0.1)

etcd is written through its HTTP/1.1 gateway (POST /v3/kv/put), Flotilla through its API
(PUT /v1/config/failover); both the same small write."""
import base64, http.client, json, os, signal, subprocess, sys, threading, time

if len(sys.argv) < 4 or sys.argv[1] not in ("etcd", "flotilla"):
    sys.exit(__doc__)
system, loss = sys.argv[1], sys.argv[2].split(":")
targets = [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) if ":" in t else ("127.0.0.1", int(t)) for t in sys.argv[3:]]
if not (loss[0] == "kill" and len(loss) == 2) and not (loss[0] == "cut" and len(loss) == 3):
    sys.exit(__doc__)
testhosts = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testhosts.sh")
done = threading.Event()
first = []
lock = threading.Lock()


def attempt(host, port):
    try:
        connection = http.client.HTTPConnection(host, port, timeout=1)
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
if loss[0] == "kill":
    os.kill(int(loss[1]), signal.SIGKILL)
else:
    subprocess.run([testhosts, "cut", loss[1], loss[2]], check=True)
deadline = time.monotonic() + 30
while not done.is_set() and time.monotonic() < deadline:
    for host, port in targets:
        threading.Thread(target=attempt, args=(host, port), daemon=True).start()
    done.wait(0.01)
if not first:
    print(f"failover-probe: no {system} write was acknowledged within 30 s of the {loss[0]}", file=sys.stderr)
    sys.exit(1)
print(round((first[0] - start_ns) / 1e6))
