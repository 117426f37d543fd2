#!/usr/bin/env bash
# Cluster figures for the README's "Cluster" section (issue 13; not run by CI).
#
#   bash scripts/cluster_load.sh
#
# In one run, side by side, each on fresh data directories:
#   single       one node, no [cluster]
#   local        3 NATS servers (replicas 3), active + reader, ack_after = "local"
#   replicated   the same with ack_after = "replicated"
# each loaded with `recordhub load --connections 16 --pipeline 8` ($MESSAGES
# messages, fixtures/adt-a01.hl7 with unique MSH-10): msg/s, ACK p50/p99.
# Under the cluster loads a probe sends one message every 0.25 s on its own
# connection and times AA -> visible on the reader (GET /patients/{nhs}):
# the reader lag. Then failover: active + standby (replicated, lease 3 s), a
# lockstep sender holding both addresses; $KILLS times, kill -9 whichever
# node is answering and time kill -> first AA from the other (the killed node
# is restarted as a follower before the next kill).
#
# Everything (3 NATS servers, the engines, the load tool) shares this
# machine's cores and loopback: say so next to any figure quoted from here.
#
# Environment: MESSAGES (default 20000), KILLS (default 10), RECORDHUB_BIN
# (default: builds the release binary), NATS_SERVER (default: nats-server on
# PATH or /usr/sbin), CLUSTER_LOAD_OUT (a file to copy the summary JSON to).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
if [ -z "${RECORDHUB_BIN:-}" ]; then
  timeout 1800 cargo build --release --locked --quiet
  RECORDHUB_BIN=target/release/recordhub
fi
NATS_SERVER="${NATS_SERVER:-$(command -v nats-server || true)}"
[ -n "$NATS_SERVER" ] || { echo "nats-server is not installed (apt-get install nats-server)" >&2; exit 1; }
exec python3 - "$RECORDHUB_BIN" "$NATS_SERVER" "${MESSAGES:-20000}" "${KILLS:-10}" "${CLUSTER_LOAD_OUT:-}" <<'PY'
import json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time, urllib.request

BIN, NATS, MESSAGES, KILLS, OUT = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ROOT = os.getcwd()
TMP = tempfile.mkdtemp(prefix="recordhub-cluster-load.")
PROCS = []
NHS = "9434765919"  # the probe's patient (valid Modulus 11); the load's patient is another


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def spawn(args, log):
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(log, "ab"))
    PROCS.append(p)
    return p


def stop(p, sig=signal.SIGTERM):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_port(port, limit=60, proc=None):
    end = time.time() + limit
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            if proc is not None and proc.poll() is not None:
                return False
            time.sleep(0.05)
    return False


def http_get(url, token=""):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None
    except (OSError, ValueError):
        return None, None


def nats_cluster():
    """Three JetStream servers routed to each other; returns their client URLs."""
    ports = [(free_port(), free_port()) for _ in range(3)]
    for i, (p, c) in enumerate(ports):
        routes = ",".join(f"nats://127.0.0.1:{rc}" for j, (_, rc) in enumerate(ports) if j != i)
        spawn([NATS, "-js", "-a", "127.0.0.1", "-p", str(p), "-n", f"n{i}", "--cluster_name", "rh",
               "--cluster", f"nats://127.0.0.1:{c}", "--routes", routes, "-sd", f"{TMP}/nats{i}"], f"{TMP}/nats{i}.log")
    for p, _ in ports:
        assert wait_port(p), "nats-server did not start"
    return [f"nats://127.0.0.1:{p}" for p, _ in ports]


class Node:
    def __init__(self, name, cluster=None):
        self.name, self.mllp, self.http = name, free_port(), free_port()
        self.dir = f"{TMP}/{name}"
        os.makedirs(self.dir)
        toml = (f'[mllp]\nlisten = "127.0.0.1:{self.mllp}"\n[http]\nlisten = "127.0.0.1:{self.http}"\n'
                f'[store]\ndata_dir = "{self.dir}/data"\n[mapping]\ndir = "{ROOT}/mappings"\n')
        if cluster:
            servers = ", ".join(f'"{u}"' for u in cluster["servers"])
            toml += (f'[cluster]\nservers = [{servers}]\nnode = "{name}"\nrole = "{cluster["role"]}"\n'
                     f'stream = "{cluster["stream"]}"\nreplicas = 3\nack_after = "{cluster["ack_after"]}"\n'
                     f'lease_ttl_secs = 3\npublish_timeout_secs = 5\n')
        self.config = f"{self.dir}/engine.toml"
        open(self.config, "w").write(toml)
        self.start()

    def start(self):
        env = dict(os.environ, RUST_LOG="warn")
        self.proc = subprocess.Popen([BIN, "serve", "--config", self.config], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(f"{self.dir}/log", "ab"))
        PROCS.append(self.proc)

    def wait_http(self, path="/health", limit=60):
        end = time.time() + limit
        while time.time() < end:
            if http_get(f"http://127.0.0.1:{self.http}{path}")[0] == 200:
                return True
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        sys.exit(f"node {self.name}: {path} not 200; log:\n" + open(f"{self.dir}/log").read()[-3000:])

    def token(self):
        out = subprocess.run([BIN, "token", "mint", "--user", "load", "--role", "clinician", "--org", "RJ1",
                              "--config", self.config], capture_output=True, text=True, check=True)
        return out.stdout.strip()


def message(ctl, nhs=NHS):
    return (f"MSH|^~\\&|PROBE|RJ1|RECORDHUB|LCR|20261121083000||ADT^A01^ADT_A01|{ctl}|P|2.4\r"
            f"EVN|A01|20261121083000\r"
            f"PID|1||{nhs}^^^NHS^NH~RJ1-{nhs}^^^RJ1^MR||PROBE^TEST^^^MR||19700101|M\r"
            f"PV1|1|I|RJ1WARD1^BED1||||C123^JONES^ANN||||||||||||{ctl}\r").encode()


def call(sock, msg):
    """Sends one framed message and returns MSA-1 of its ACK."""
    sock.sendall(b"\x0b" + msg + b"\x1c\x0d")
    buf = b""
    while b"\x1c\x0d" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("closed")
        buf += chunk
    msa = [s for s in buf.split(b"\r") if s.startswith(b"MSA")]
    return msa[0].split(b"|")[1].decode() if msa else "?"


def probe_reader_lag(active, reader, stop_flag, lags):
    """One message every 0.25 s to the active node; AA -> visible on the reader."""
    token, k = reader.token(), 0
    sock = socket.create_connection(("127.0.0.1", active.mllp), 10)
    sock.settimeout(30)
    while not stop_flag.is_set():
        ctl = f"probe{k}"
        k += 1
        if call(sock, message(ctl)) != "AA":
            continue
        acked = time.time()
        while time.time() - acked < 60:
            status, body = http_get(f"http://127.0.0.1:{reader.http}/patients/{NHS}", token)
            if status == 200 and any(i.get("id") == ctl for i in (body or {}).get("items", [])):
                lags.append((time.time() - acked) * 1000)
                break
            time.sleep(0.005)
        time.sleep(0.25)


def load(node):
    out = subprocess.run([BIN, "load", "--to", f"127.0.0.1:{node.mllp}", "--connections", "16", "--pipeline", "8",
                          "--messages", str(MESSAGES), "fixtures/adt-a01.hl7"], capture_output=True, text=True,
                         timeout=900)
    if out.returncode != 0:
        sys.exit(f"recordhub load failed: {out.stderr}")
    return json.loads(out.stdout)


def scenario(name, servers=None, ack_after=None):
    print(f"== {name}", flush=True)
    if servers is None:
        active, reader = Node(f"{name}-single"), None
        assert wait_port(active.mllp, proc=active.proc), "single node did not start"
    else:
        cfg = dict(servers=servers, stream=f"LOAD_{name.upper()}", ack_after=ack_after)
        active = Node(f"{name}-a", dict(cfg, role="active"))
        assert wait_port(active.mllp, proc=active.proc), "active node did not listen"
        reader = Node(f"{name}-r", dict(cfg, role="reader"))
        reader.wait_http("/ready")
    lags, stop_flag = [], threading.Event()
    probe = threading.Thread(target=probe_reader_lag, args=(active, reader, stop_flag, lags)) if reader else None
    if probe:
        probe.start()
    summary = load(active)
    stop_flag.set()
    if probe:
        probe.join()
    for n in (active, reader):
        if n:
            stop(n.proc)
    summary["reader_lag_ms"] = sorted(lags)
    print(json.dumps({k: summary[k] for k in ("sent", "messages_per_sec", "latency_us", "acked_by_code")}), flush=True)
    return summary


def failover(servers):
    print(f"== failover x{KILLS}", flush=True)
    cfg = dict(servers=servers, stream="LOAD_FAILOVER", ack_after="replicated")
    nodes = [Node("fo-a", dict(cfg, role="active"))]
    assert wait_port(nodes[0].mllp, proc=nodes[0].proc)
    nodes.append(Node("fo-b", dict(cfg, role="standby")))
    nodes[1].wait_http("/ready")
    times, k = [], 0
    for round in range(KILLS):
        # Which node answers now.
        holder = next(n for n in nodes if wait_port(n.mllp, 1))
        other = nodes[1 - nodes.index(holder)]
        holder.proc.kill()
        holder.proc.wait()
        killed = time.time()
        while time.time() - killed < 60:
            try:
                with socket.create_connection(("127.0.0.1", other.mllp), 1) as s:
                    s.settimeout(10)
                    k += 1
                    if call(s, message(f"fo{k}")) == "AA":
                        break
            except OSError:
                time.sleep(0.02)
        took = time.time() - killed
        times.append(took * 1000)
        print(f"kill {round + 1}: {holder.name} -> {other.name} answered AA after {took * 1000:.0f} ms", flush=True)
        rejoin(holder)
    for n in nodes:
        stop(n.proc)
    return sorted(times)


def rejoin(node):
    """Restarts a killed node as a follower. One whose journal holds entries
    it committed but never replicated (none of them AA'd under "replicated")
    refuses to start, saying to move its journal and index aside: the
    operator's step, done here, and it re-syncs from the stream."""
    node.start()
    end = time.time() + 60
    while time.time() < end:
        if http_get(f"http://127.0.0.1:{node.http}/ready")[0] == 200:
            return
        if node.proc.poll() is not None:
            log = open(f"{node.dir}/log").read()
            if "diverges from the stream" not in log[-2000:]:
                sys.exit(f"node {node.name} exited:\n{log[-3000:]}")
            stamp = time.time_ns()
            for part in ("journal", "index"):
                if os.path.exists(f"{node.dir}/data/{part}"):
                    os.rename(f"{node.dir}/data/{part}", f"{node.dir}/data/{part}.aside-{stamp}")
            print(f"  {node.name} diverged (unreplicated entries): journal and index moved aside, re-syncing", flush=True)
            with open(f"{node.dir}/log", "a") as f:
                f.write("--- restarted after moving the journal aside ---\n")
            node.start()
        time.sleep(0.05)
    sys.exit(f"node {node.name} not ready after a restart")


def pct(v, p):
    return v[min(len(v) - 1, int(len(v) * p))] if v else float("nan")


try:
    results = {"single": scenario("single")}
    servers = nats_cluster()
    time.sleep(3)  # a JetStream meta leader; the first node's connect retries anyway
    results["local"] = scenario("local", servers, "local")
    results["replicated"] = scenario("replicated", servers, "replicated")
    fo = failover(servers)
    print(f"\n{MESSAGES} messages at 16 connections x 8 in flight; {os.cpu_count()} cores shared by 3 NATS servers, "
          "the engines and the load tool, all on loopback")
    print(f"{'scenario':<11} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'reader lag p50/p99/max ms':>27}  codes")
    for name, s in results.items():
        l, lag = s["latency_us"], s["reader_lag_ms"]
        codes = " ".join(f"{c}={n}" for c, n in sorted(s["acked_by_code"].items()))
        lagtxt = f"{pct(lag, .5):.0f}/{pct(lag, .99):.0f}/{max(lag):.0f} (n={len(lag)})" if lag else "-"
        print(f"{name:<11} {s['messages_per_sec']:>8.0f} {l['p50'] / 1000:>8.1f} {l['p99'] / 1000:>8.1f} {lagtxt:>27}  {codes}")
    print(f"failover (kill -9 -> first AA from the standby, lease 3 s), {len(fo)} kills: "
          f"median {statistics.median(fo):.0f} ms, min {fo[0]:.0f}, max {fo[-1]:.0f}")
    if OUT:
        results["failover_ms"] = fo
        json.dump(results, open(OUT, "w"), indent=1)
finally:
    for p in PROCS:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(TMP, ignore_errors=True)
PY
