"""Triton Inference Server with kiln's backend, from Python: `kiln package`
and `kiln serve` for tests, benchmarks and scripts.

    with kiln.serving.Server(repo) as server:
        client = tritonclient.http.InferenceServerClient(server.http)

The server listens on free loopback ports and is stopped (SIGINT, as Ctrl-C
would) when the block ends; stop() checks that no tritonserver is left.
"""
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from . import Error, _find_binary


def package(model_so, repo, name=None, version=1, max_queue_delay_us=100, instances=1,
            threads=1):
    """Writes repo/name/config.pbtxt and repo/name/version/model.so."""
    args = [_find_binary(), "package", model_so, "--repo", repo, "--version", str(version),
            "--max-queue-delay-us", str(max_queue_delay_us), "--instances", str(instances),
            "--threads", str(threads)]
    if name:
        args += ["--name", name]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise Error(done.stderr.strip() or done.stdout.strip())
    return os.path.join(repo, name or os.path.splitext(os.path.basename(model_so))[0])


def free_ports(count):
    """Ports free on loopback now (bound together so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class Server:
    """`kiln serve repo` on free loopback ports, ready when start() returns."""

    def __init__(self, repo, model_control="none", triton_args=(), log_path=None,
                 ready_timeout=120):
        self.repo, self.model_control = repo, model_control
        self.triton_args, self.ready_timeout = list(triton_args), ready_timeout
        self.log_path = log_path or tempfile.mkstemp(prefix="kiln-serve-", suffix=".log")[1]
        self.process, self.triton_pid = None, None

    def start(self):
        http, grpc, metrics = free_ports(3)
        self.http, self.grpc = f"127.0.0.1:{http}", f"127.0.0.1:{grpc}"
        self.metrics = f"http://127.0.0.1:{metrics}/metrics"
        args = [_find_binary(), "serve", self.repo, "--http-port", str(http), "--grpc-port",
                str(grpc), "--metrics-port", str(metrics), "--model-control", self.model_control]
        if self.triton_args:
            args += ["--"] + self.triton_args
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Error(f"kiln serve exited with {self.process.returncode}:\n{self.log()}")
            self.triton_pid = self.triton_pid or next(iter(_children(self.process.pid)), None)
            try:
                with urllib.request.urlopen(f"http://{self.http}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                pass
            time.sleep(0.2)
        self.stop()
        raise Error(f"Triton was not ready after {self.ready_timeout} s:\n{self.log()}")

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-8000:]

    def stop(self, timeout=60):
        """SIGINT, as Ctrl-C; returns kiln serve's exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise Error(f"kiln serve did not stop within {timeout} s:\n{self.log()}")
        self._log.close()
        status, self.process = self.process.returncode, None
        if self.triton_pid and _alive(self.triton_pid):
            os.kill(self.triton_pid, signal.SIGKILL)
            raise Error(f"tritonserver {self.triton_pid} outlived kiln serve")
        return status

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
