"""Warm start: the workflow's short jobs fork from a process that has imported torch and timm once.

A demo job's own work is often shorter than its start-up (bench/README.md, "Demo time"): before
it does anything, ``python -m hico`` imports torch (~2 s here), timm (~2-3 s, most of it
``torch._dynamo`` through torchvision) and scikit-learn. ``python -m hico.warm -- COMMAND``
runs COMMAND (``make demo``: Snakemake) with ``HICO_WARM_DIR`` set. Under it, a ``python -m hico``
job asks a warm server to fork a child that runs its command line, and waits for it:

- the child gets the job's stdin, stdout and stderr (passed over a Unix socket, so the job's
  ``> log 2>&1`` holds), the job's ``sys.argv``, and exits with the status the job then exits
  with; SIGTERM and SIGINT sent to the job are sent on to the child, and a child whose job is
  gone is terminated;
- a server serves only jobs whose interpreter, ``sys.path``, working directory and whole
  environment equal its own, because libraries read some of them once, at import time
  (OpenMP reads ``OMP_NUM_THREADS``, huggingface_hub ``HF_HOME``). The first job of a new such
  combination starts a server for it, and jobs wait in its backlog while it imports (serving
  between imports); a job whose server refuses, ended or never binds runs as usual (cold). A
  warm job therefore computes what a cold one does (tested: the same arrays and weights).
- The server forks from its only thread and never runs a torch operation, so no thread pool
  exists to be lost in the fork. It ends with COMMAND (``python -m hico.warm`` stops it) or,
  should that wrapper be killed, within half a second.

What a warm job does not have: its Snakemake ``benchmark:`` file measures the waiting job
process, not the child, so its ``cpu_time`` and ``max_rss`` are not the job's; the pretraining
run records ``warm_start`` in its provenance and ``compute_cost.csv`` leaves those two columns
empty for it. Without ``HICO_WARM_DIR`` (cluster jobs, ``--use-conda``, a shell) nothing changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DIR_ENV = "HICO_WARM_DIR"
OWNER_ENV = "HICO_WARM_OWNER"
PRELOAD_ENV = "HICO_WARM_PRELOAD"  # comma-separated modules instead of PRELOAD (tests: a lighter server)
#: what a server imports before it serves: what the workflow's torch commands import
PRELOAD = ("hico.cli", "numpy", "torch", "timm", "hico.models.backbone", "sklearn.model_selection", "hico.train",
           "baselines", "hico.evaluation.features", "hico.evaluation.run", "hico.evaluate", "hico.evaluation.finetune",
           "hico.report.aggregate", "hico.report.plots", "sklearn.manifold")
#: the longest a job waits for a live server to bind its socket (it does within ~0.1 s of starting;
#: minutes only on a machine too loaded to start a Python process)
SERVER_START_WAIT_S = 120.0
_MAX_REQUEST = 1 << 20

_started_warm = False


def started_warm() -> bool:
    """Whether this process is a child forked by a warm server (for provenance)."""
    return _started_warm


def server_key() -> str:
    """What a server must share with a job to serve it: interpreter, sys.path, cwd, environment."""
    identity = {"executable": sys.executable, "path": sys.path, "cwd": os.getcwd(), "env": sorted(os.environ.items())}
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:24]


# ---------------------------------------------------------------- the job (client) side
def run_job(argv: list[str]) -> int | None:
    """Run ``python -m hico argv`` in a warm child: its exit status, or None to run it here."""
    root = os.environ.get(DIR_ENV)
    if not root or not Path(root).is_dir():
        return None
    key = server_key()
    sock = _connect(Path(root), key)
    if sock is None:
        return None
    with sock:
        request = json.dumps({"key": key, "argv": sys.argv[:1] + list(argv)}).encode()
        try:
            socket.send_fds(sock, [len(request).to_bytes(8, "big") + request], [0, 1, 2])
            reply = sock.makefile("rb")
            first = reply.readline().split()
        except OSError:
            return None
        if len(first) != 2 or first[0] != b"pid":
            return None  # refused or the server ended before it forked: nothing ran, run it here
        return _wait_for_child(int(first[1]), reply)


def _wait_for_child(pid: int, reply) -> int:
    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        line = reply.readline().split()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if len(line) != 2 or line[0] != b"exit":
        log = Path(os.environ[DIR_ENV]) / f"{server_key()}.log"
        print(f"hico: error: the warm-start server ended while it ran this job (pid {pid}); its log, while "
              f"the run lasts: {log}. Run the job again, or without {DIR_ENV} to run it cold", file=sys.stderr)
        return 1
    code = int(line[1])
    if code < 0:  # killed by a signal: end the same way, as the cold job would have
        sys.stdout.flush()
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def _connect(root: Path, key: str) -> socket.socket | None:
    """A connection to this key's server; the first job of a key starts it. None: run cold."""
    path, started = root / f"{key}.sock", root / f"{key}.started"
    try:
        fd = os.open(started, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        pass
    except OSError:
        return None
    else:
        with open(root / f"{key}.log", "ab") as log:
            server = subprocess.Popen([sys.executable, "-m", "hico.warm", "serve", "--key", key],
                                      stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        os.write(fd, str(server.pid).encode())
        os.close(fd)
    # Waiting in the server's backlog while it imports costs this job no more than importing
    # itself; it waits for as long as the server process lives and has not bound its socket.
    deadline = time.monotonic() + SERVER_START_WAIT_S
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except FileNotFoundError:  # not bound yet
            sock.close()
        except OSError:  # a socket that nobody listens on: its server ended
            sock.close()
            return None
        if (root / f"{key}.refused").exists() or time.monotonic() > deadline or not _server_starting(started):
            return None
        time.sleep(0.02)


def _server_starting(started: Path) -> bool:
    """Whether the server process named in ``started`` still lives (an empty file: being started)."""
    try:
        pid = started.read_text().strip()
    except OSError:
        return False
    return not pid or (_alive(int(pid)) and not _zombie(int(pid)))


# ---------------------------------------------------------------- the server side
class _Server:
    def __init__(self, root: Path, key: str):
        self.root, self.key = root, key
        self.path = root / f"{key}.sock"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.path))
        self.listener.listen(64)  # jobs that come while it imports wait in the backlog
        self.children: dict[int, socket.socket] = {}
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.stopping = False
        self.forked = 0

    def serve(self, preload: tuple[str, ...], owner: int | None) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        started = time.perf_counter()
        try:
            for module in preload:
                self.poll(0)  # a job that came meanwhile waits for one import at most, not all
                try:
                    __import__(module)
                except Exception as e:  # noqa: BLE001 (it fails in the job too, with its own message)
                    print(f"[warm] preload {module}: {type(e).__name__}: {e}", file=sys.stderr)
            print(f"[warm] {self.key} ready in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
            while not self.stopping and (owner is None or _alive(owner)):
                self.poll(0.5)
        finally:
            self.listener.close()
            self.path.unlink(missing_ok=True)
            for pid in self.children:
                _signal(pid, signal.SIGTERM)
            print(f"[warm] {self.key} forked {self.forked} jobs", file=sys.stderr, flush=True)

    def poll(self, timeout: float) -> None:
        for event, _ in self.selector.select(timeout=timeout):
            try:
                if event.fileobj is self.listener:
                    self._accept()
                else:
                    self._job_gone(event.fileobj)
            except Exception as e:  # noqa: BLE001 (one job's trouble must not end the others' children)
                print(f"[warm] {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        self._reap()

    def _stop(self, _signum, _frame) -> None:
        self.stopping = True

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        fds: list[int] = []
        try:
            conn.settimeout(10)
            head, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
            size = int.from_bytes(head[:8], "big")
            body = head[8:]
            while len(body) < size <= _MAX_REQUEST:
                chunk = conn.recv(size - len(body))
                if not chunk:
                    break
                body += chunk
            request = json.loads(body)
        except (OSError, ValueError) as e:
            print(f"[warm] bad request: {e}", file=sys.stderr)
            conn.close()
            for fd in fds:
                os.close(fd)
            return
        if request.get("key") != self.key or len(fds) != 3:
            conn.close()  # not this server's job: it runs cold
            for fd in fds:
                os.close(fd)
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._become_job(conn, fds, request["argv"])
        for fd in fds:
            os.close(fd)
        self.forked += 1
        self.children[pid] = conn
        try:
            conn.sendall(f"pid {pid}\n".encode())
        except OSError:  # the job ended while it waited in the backlog (Snakemake cancelled it)
            _signal(pid, signal.SIGTERM)
            conn.close()
            return
        conn.settimeout(None)
        self.selector.register(conn, selectors.EVENT_READ)

    def _become_job(self, conn: socket.socket, fds: list[int], argv: list[str]) -> None:
        """In the child: the job's descriptors, signals and argv, then its command; never returns."""
        code = 1
        try:
            self.selector.close()
            self.listener.close()
            conn.close()
            for other in self.children.values():
                other.close()
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            _rebind_standard_streams()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            code = _run_command(argv)
        except BaseException:  # noqa: BLE001 (the child reports everything and exits with 1)
            import traceback

            traceback.print_exc()
        finally:
            _exit_like_python(code)

    def _job_gone(self, conn) -> None:
        """The waiting job's socket became readable: the job ended (killed): end its child."""
        for pid, c in self.children.items():
            if c is conn:
                self.selector.unregister(conn)
                _signal(pid, signal.SIGTERM)
                return

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None or conn.fileno() < 0:
                continue
            try:
                conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
            except OSError:
                pass
            if conn.fileno() >= 0:
                try:
                    self.selector.unregister(conn)
                except (KeyError, ValueError):
                    pass
                conn.close()


def _run_command(argv: list[str]) -> int:
    import random

    import hico.warm  # the server runs as __main__: the flag provenance reads is this module's

    hico.warm._started_warm = True
    random.seed()  # a cold interpreter seeds `random` from the OS; the fork copied the server's state
    sys.argv = list(argv)
    from hico.cli import main

    try:
        return main(argv[1:])
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return 130


def _rebind_standard_streams() -> None:
    """sys.std* of the job's descriptors, buffered as a cold interpreter buffers them."""
    import io

    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    for name, fd, mode in (("stdin", 0, "rb"), ("stdout", 1, "wb"), ("stderr", 2, "wb")):
        old = getattr(sys, name)
        raw = open(fd, mode, buffering=0 if unbuffered and fd else -1, closefd=False)
        tty = os.isatty(fd)
        stream = io.TextIOWrapper(raw, encoding=old.encoding, errors=old.errors,
                                  line_buffering=tty or (fd == 2), write_through=unbuffered and fd != 0)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _exit_like_python(code: int) -> None:
    """What a cold interpreter does at exit (non-daemon threads, atexit, flushing), then _exit."""
    import atexit
    import threading

    try:
        for t in threading.enumerate():
            if t is not threading.main_thread() and not t.daemon:
                t.join()
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    finally:
        os._exit(code if 0 <= code < 256 else 1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _serve(key: str) -> int:
    root = Path(os.environ[DIR_ENV])
    if server_key() != key:
        (root / f"{key}.refused").touch()  # its jobs run cold at once instead of waiting
        print("[warm] this server's interpreter, path or environment differs from its job's; not serving",
              file=sys.stderr)
        return 0
    try:
        server = _Server(root, key)
    except OSError:
        (root / f"{key}.refused").touch()
        raise
    owner = os.environ.get(OWNER_ENV)
    preload = tuple(m for m in os.environ.get(PRELOAD_ENV, ",".join(PRELOAD)).split(",") if m)
    server.serve(preload, int(owner) if owner else None)
    return 0


# ---------------------------------------------------------------- the wrapper
def run_with_servers(command: list[str]) -> int:
    """Run ``command`` with warm start on; stop its servers when it ends."""
    base = tempfile.gettempdir()
    root = Path(tempfile.mkdtemp(prefix="hico-warm-", dir=base if len(base) <= 48 else "/tmp"))  # a socket path: <108 bytes
    env = {**os.environ, DIR_ENV: str(root), OWNER_ENV: str(os.getpid())}
    proc = subprocess.Popen(command, env=env)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the command itself
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
        print(f"[warm] {_stop_servers(root)}", file=sys.stderr)


def _summary(root: Path) -> str:
    forked = [int(line.split()[-2]) for log in root.glob("*.log") for line in log.read_text().splitlines()
              if line.startswith("[warm]") and line.endswith(" jobs") and " forked " in line]
    return f"{sum(forked)} jobs forked by {len(forked)} warm-start server{'' if len(forked) == 1 else 's'}"


def _stop_servers(root: Path) -> str:
    """Stop the folder's servers and remove it; what they did, in a line."""
    for sock in root.glob("*.sock"):
        sock.unlink(missing_ok=True)  # no new jobs
    deadline = time.monotonic() + 10
    pids = _server_pids(root)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _alive(p) and not _zombie(p)]
        time.sleep(0.05)
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    summary = _summary(root)
    for f in root.iterdir():
        f.unlink(missing_ok=True)
    root.rmdir()
    return summary


def _server_pids(root: Path) -> list[int]:
    """The live servers of this folder: the pids their starting jobs recorded in ``<key>.started``
    (they are not our children), each checked to be still that server, not a reused pid."""
    pids = []
    for started in root.glob("*.started"):
        try:
            pid = int(started.read_text())
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"hico.warm" in args and args[-3:-1] == [b"--key", started.stem.encode()]:
            pids.append(pid)
    return pids


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        p = argparse.ArgumentParser(prog="hico.warm serve")
        p.add_argument("--key", required=True)
        return _serve(p.parse_args(argv[1:]).key)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m hico.warm -- COMMAND [ARG ...]\n\n" + __doc__.strip().splitlines()[0])
        return 0 if argv else 2
    return run_with_servers(argv)


if __name__ == "__main__":
    raise SystemExit(main())
