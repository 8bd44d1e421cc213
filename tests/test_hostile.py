"""Hostile inputs and outputs (issue 13, "Nothing lost, nothing hangs").

Outputs: -o only ever replaces a regular file, atomically, keeping its mode; a symlink is
written through to its target; a character device or FIFO is written through (a FIFO
with no reader is refused at once); a read-only file, a directory, the input file
itself and every OSError of the output are exit 2 naming OUT; SIGTERM leaves no
temporary file behind. Inputs: FILE is read once whatever it is (pipe, FIFO,
/dev/stdin, "-"); lines are bounded; the importers' patterns run in linear time; huge
integers, a byte order mark and overlapping memslots are FILE:LINE errors.

Never run against the real /dev/null: devices and FIFOs are made in tmp_path.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import string
import subprocess
import sys
import threading
import time

import pytest

from gmemlab import cli, fsutil
from gmemlab.traces import format as fmt
from gmemlab.traces.importers import ftrace, qemu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACE = os.path.join(ROOT, "data", "traces", "launch", "snp_private_first.jsonl")
RECORDING = os.path.join(ROOT, "data", "recordings", "qemu-snp-boot.log")
PY = sys.executable
TIMEOUT = 10


def gmemlab(*args, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("timeout", TIMEOUT)
    kw.setdefault("capture_output", True)
    return subprocess.run([PY, "-m", "gmemlab", *args], cwd=ROOT, **kw)


def run(capsys, *args) -> tuple[int, str, str]:
    rc = cli.main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def imported() -> str:
    from gmemlab.traces.importers import run_import
    with open(RECORDING, "rb") as f:
        return run_import(f.read(), RECORDING, "qemu")[0]


def no_temp(folder) -> bool:
    return not [n for n in os.listdir(folder) if n.startswith(".tmp-")]


def reader_thread(path, sink: list) -> threading.Thread:
    def read():
        with open(path, "rb") as f:
            sink.append(f.read())
    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


# --- outputs ------------------------------------------------------------------------------

def test_output_fifo_is_written_through(tmp_path, capsys):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list = []
    t = reader_thread(fifo, got)
    time.sleep(0.1)  # let the reader open it
    rc, _, err = run(capsys, "import", RECORDING, "--from", "qemu", "-o", str(fifo))
    t.join(TIMEOUT)
    assert rc == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert got and got[0].decode() == imported()
    assert no_temp(tmp_path)


def test_output_fifo_without_reader_is_refused_at_once(tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    p = gmemlab("import", RECORDING, "--from", "qemu", "-o", str(fifo))
    assert time.monotonic() - t0 < TIMEOUT
    assert p.returncode == 2, p.stderr
    assert f"{fifo}: no reader".encode() in p.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_output_char_device_is_written_through(tmp_path, capsys):
    null = tmp_path / "null"
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own
        with open(null, "wb") as f:
            f.write(b"x")
    except OSError as e:
        pytest.skip(f"cannot make or open a device node here: {e}")
    link = tmp_path / "null-link"
    os.symlink(null, link)
    for out in (null, link):
        rc, _, err = run(capsys, "import", RECORDING, "--from", "qemu", "-o", str(out))
        assert rc == 0, err
        assert stat.S_ISCHR(os.stat(out).st_mode)
    assert os.path.islink(link)
    assert no_temp(tmp_path)


def test_output_dev_stdout_on_a_pipe():
    p = gmemlab("import", RECORDING, "--from", "qemu", "-o", "/dev/stdout")
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == imported()


def test_output_symlink_writes_its_target(tmp_path, capsys):
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    link = tmp_path / "link.jsonl"
    os.symlink("real.jsonl", link)
    rc, _, err = run(capsys, "import", RECORDING, "--from", "qemu", "-o", str(link))
    assert rc == 0, err
    assert os.path.islink(link) and os.readlink(link) == "real.jsonl"
    assert target.read_text() == imported()
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert no_temp(tmp_path)


def test_output_keeps_the_mode_of_an_existing_file(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    os.chmod(out, 0o604)
    rc, _, err = run(capsys, "import", RECORDING, "--from", "qemu", "-o", str(out))
    assert rc == 0, err
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o604
    assert out.read_text() == imported()


def test_output_read_only_file_is_refused(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    out.write_text("keep me\n")
    os.chmod(out, 0o444)
    rc, _, err = run(capsys, "import", RECORDING, "--from", "qemu", "-o", str(out))
    assert rc == 2
    assert err.startswith(f"{out}: ") and "read-only" in err
    assert out.read_text() == "keep me\n"
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o444
    assert no_temp(tmp_path)


@pytest.mark.parametrize("how", ["same", "hardlink", "symlink"])
def test_output_that_is_the_input_is_refused(tmp_path, capsys, how):
    rec = tmp_path / "boot.log"
    shutil.copyfile(RECORDING, rec)
    before = rec.read_bytes()
    out = rec
    if how == "hardlink":
        out = tmp_path / "hard.log"
        os.link(rec, out)
    elif how == "symlink":
        out = tmp_path / "sym.log"
        os.symlink(rec, out)
    rc, _, err = run(capsys, "import", str(rec), "--from", "qemu", "-o", str(out))
    assert rc == 2
    assert err.startswith(f"{out}: is the input file")
    assert rec.read_bytes() == before


def test_output_directory_or_under_a_file_is_exit_2(tmp_path, capsys):
    rc, _, err = run(capsys, "import", RECORDING, "--from", "qemu", "-o", str(tmp_path))
    assert rc == 2 and err.startswith(f"{tmp_path}: ") and "EISDIR" in err
    afile = tmp_path / "afile"
    afile.write_text("")
    out = afile / "out.jsonl"
    rc, _, err = run(capsys, "import", RECORDING, "--from", "qemu", "-o", str(out))
    assert rc == 2 and err.startswith(f"{out}: ") and "ENOTDIR" in err, err
    assert "internal error" not in err


@pytest.mark.parametrize("where", ["fsync", "replace", "write"])
def test_output_enospc_is_exit_2_and_leaves_no_temp(tmp_path, capsys, monkeypatch, where):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if where == "write":
        monkeypatch.setattr(fsutil.os, "fdopen", _fdopen_full(os.fdopen))
    else:
        monkeypatch.setattr(fsutil.os, where, full)
    out = tmp_path / "out.jsonl"
    rc, _, err = run(capsys, "import", RECORDING, "--from", "qemu", "-o", str(out))
    assert rc == 2, err
    assert err.startswith(f"{out}: ") and "ENOSPC" in err
    assert not out.exists()
    assert no_temp(tmp_path)


def _fdopen_full(real):
    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, s):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()
    return lambda *a, **k: Full(real(*a, **k))


def test_sigterm_during_output_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "big.jsonl"
    p = subprocess.Popen([PY, "-m", "gmemlab", "emulate", "guest-boot", "--events", "50000000", "-o", str(out)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + TIMEOUT
        while no_temp(tmp_path) and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.05)
        assert not no_temp(tmp_path), "the temporary file never appeared"
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    assert no_temp(tmp_path)
    assert not out.exists()


def test_non_utf8_file_name_on_a_strict_utf8_stdout(tmp_path):
    name = os.path.join(os.fsencode(tmp_path), b"t\xff.jsonl")
    shutil.copyfile(TRACE, name)
    env = dict(os.environ, PYTHONIOENCODING="utf-8:strict", LC_ALL="C.UTF-8")
    p = subprocess.run([os.fsencode(PY), b"-m", b"gmemlab", b"check-trace", name], cwd=ROOT, env=env,
                       capture_output=True, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    assert b"internal error" not in p.stderr
    assert b"t\\udcff.jsonl" in p.stdout
    # and as an import's output name, and its input name
    rec = os.path.join(os.fsencode(tmp_path), b"r\xfe.log")
    shutil.copyfile(RECORDING, rec)
    p = subprocess.run([os.fsencode(PY), b"-m", b"gmemlab", b"import", rec, b"--from", b"qemu"], cwd=ROOT,
                       env=env, capture_output=True, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    fmt.loads(p.stdout, "stdout")  # still a valid trace


# --- inputs -------------------------------------------------------------------------------

def _expected(capsys) -> tuple[int, str]:
    rc, out, _ = run(capsys, "check-trace", TRACE, "--json")
    return rc, out


def test_check_trace_reads_a_pipe_once(capsys):
    rc, out = _expected(capsys)
    with open(TRACE, "rb") as f:
        data = f.read()
    for name in ("/dev/stdin", "-"):
        t0 = time.monotonic()
        p = gmemlab("check-trace", name, "--json", input=data)
        assert time.monotonic() - t0 < TIMEOUT
        assert p.returncode == rc, p.stderr
        assert p.stdout.decode() == out
    cat = subprocess.Popen(["cat", TRACE], stdout=subprocess.PIPE)
    p = gmemlab("check-trace", "/dev/stdin", "--json", stdin=cat.stdout)
    cat.wait()
    assert p.returncode == rc and p.stdout.decode() == out, p.stderr


def test_check_trace_reads_a_fifo_once(tmp_path, capsys):
    rc, out = _expected(capsys)
    fifo = tmp_path / "t.fifo"
    os.mkfifo(fifo)

    def write():
        with open(fifo, "wb") as f, open(TRACE, "rb") as src:
            f.write(src.read())
    t = threading.Thread(target=write, daemon=True)
    t.start()
    p = gmemlab("check-trace", str(fifo), "--json")
    t.join(TIMEOUT)
    assert p.returncode == rc, p.stderr
    assert p.stdout.decode() == out


def _limited():
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (1 << 31, 1 << 31))  # 2 GiB: far below "until MemoryError"


@pytest.mark.parametrize("cmd", [["check-trace"], ["import", "--from", "qemu"], ["import", "--from", "ftrace"]])
def test_dev_zero_is_a_line_too_long(cmd):
    t0 = time.monotonic()
    p = gmemlab(cmd[0], "/dev/zero", *cmd[1:], preexec_fn=_limited)
    assert time.monotonic() - t0 < TIMEOUT
    assert p.returncode == 2, p.stderr
    assert f"/dev/zero:1: line longer than {fmt.MAX_LINE} bytes".encode() in p.stderr


def test_import_reads_standard_input(capsys):
    with open(RECORDING, "rb") as f:
        p = gmemlab("import", "-", "--from", "qemu", stdin=f)
    assert p.returncode == 0, p.stderr
    assert "imported from - (qemu log)" in p.stdout.decode().splitlines()[0]
    assert p.stdout.decode().splitlines()[1:] == imported().splitlines()[1:]


def test_huge_integer_is_file_line(tmp_path, capsys):
    t = tmp_path / "t.jsonl"
    t.write_text('{"format": "gmemlab-trace/1", "platform": "snp"}\n'
                 '{"op": "create_gmem", "size": 1' + "0" * 5000 + '}\n')
    rc, _, err = run(capsys, "check-trace", str(t))
    assert rc == 2
    assert err.startswith(f"{t}:2: ") and "too long" in err


def test_byte_order_mark_is_named(tmp_path, capsys):
    t = tmp_path / "t.jsonl"
    with open(TRACE, "rb") as f:
        t.write_bytes(b"\xef\xbb\xbf" + f.read())
    rc, _, err = run(capsys, "check-trace", str(t))
    assert rc == 2
    assert err.strip() == f"{t}:1: starts with a UTF-8 byte order mark; save without BOM"


def test_overlapping_memslots_are_refused(tmp_path, capsys):
    log = tmp_path / "q.log"
    log.write_text(
        "kvm_set_user_memory AddrSpace#0 Slot#0 flags=0x4 gpa=0x0 size=0x200000 ua=0x7f0000000000"
        " guest_memfd=20 guest_memfd_offset=0x0 ret=0\n"
        "kvm_set_user_memory AddrSpace#0 Slot#1 flags=0x4 gpa=0x100000 size=0x200000 ua=0x7f0000200000"
        " guest_memfd=20 guest_memfd_offset=0x200000 ret=0\n"
        "kvm_convert_memory start 0x1000 size 0x1000 private_to_shared\n")
    rc, _, err = run(capsys, "import", str(log), "--from", "qemu")
    assert rc == 2
    assert err.startswith(f"{log}:2: ") and "memslot #1" in err and "memslot #0" in err


def _patterns():
    yield "ftrace._TRACE_CMD", ftrace._TRACE_CMD.fullmatch
    yield "ftrace._PERF_SCRIPT", ftrace._PERF_SCRIPT.fullmatch
    yield "ftrace._IGNORED", ftrace._IGNORED.fullmatch
    yield "ftrace._LOST", ftrace._LOST.fullmatch
    yield "ftrace._KNOWN_MENTION", ftrace._KNOWN_MENTION.search
    for name, (pattern, _) in ftrace._FORMATS.items():
        yield f"ftrace.{name}", pattern.fullmatch
    yield "qemu._PREFIX", qemu._PREFIX.match
    yield "qemu._EVENT", qemu._EVENT.match
    for name, (pattern, _) in qemu._FORMATS.items():
        yield f"qemu.{name}", pattern.match


def _hostile_lines():
    n = 200_000
    for c in " \t" + string.digits[:2] + "a_" + string.punctuation:
        yield c * n
        yield "x" + c * n + "\x01"
    yield "a-1 " * (n // 4)
    yield "a 1 [1] " * (n // 8)
    yield "qemu-kvm-1 [1] 1.0: " + "a" * n
    yield "qemu 1 [1] 1.0: " + " " * n + "x"


def test_importer_patterns_run_in_linear_time():
    lines = list(_hostile_lines())
    for name, match in _patterns():
        for line in lines:
            t0 = time.monotonic()
            match(line)
            took = time.monotonic() - t0
            assert took < 2, f"{name} took {took:.1f} s on {line[:20]!r}... ({len(line)} chars)"


def test_importers_convert_hostile_lines_quickly():
    for line in _hostile_lines():
        for convert in (ftrace.convert, qemu.convert):
            t0 = time.monotonic()
            try:
                convert(line.encode() + b"\n", "h.txt")
            except Exception as e:  # an InputError naming the line, never another exception
                assert type(e).__name__ == "InputError", repr(e)
            assert time.monotonic() - t0 < 2


def test_the_conformance_view_reads_only_its_own_manifests(tmp_path):
    # A manifest with a non-string verdict records nothing (it crashed notebook 04's view);
    # a manifest.json further up than the folder above is not the trace's.
    import json
    import shutil
    from gmemlab.errors import InputError
    from gmemlab.render import views
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "data", "traces", "selftests", "truncate.jsonl")
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    shutil.copy(src, deep / "t.jsonl")
    (tmp_path / "manifest.json").write_text(json.dumps({"a/b/c/t.jsonl": {"private-first": "violates"}}))
    (deep / "manifest.json").write_text(json.dumps({"t.jsonl": {"private-first": 7}}))
    c = views.conformance([str(deep / "t.jsonl")])
    assert [r.expected for r in c.results] == [None]
    (deep / "manifest.json").unlink()
    c = views.conformance([str(deep / "t.jsonl")])
    assert [r.expected for r in c.results] == [None]      # the one at tmp_path is too far up
    (deep / "manifest.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not a manifest"):
        views.conformance([str(deep / "t.jsonl")])


def test_qemu_import_is_not_quadratic_in_memslots(tmp_path):
    # 2,000 memslots and 20,000 conversions: a bisection per conversion, not a sort and a
    # scan of every slot.
    import time
    slots = 2000
    lines = [f"1@1.0:kvm_set_user_memory AddrSpace#0 Slot#{i} flags=0x4 gpa={i * 0x200000:#x} "
             f"size=0x200000 ua=0x7f0000000000 guest_memfd=20 guest_memfd_offset={i * 0x200000:#x} ret=0"
             for i in range(slots)]
    lines += [f"1@2.0:kvm_convert_memory start {(k % slots) * 0x200000:#x} size 0x1000 shared_to_private"
              for k in range(20000)]
    rec = tmp_path / "many-slots.log"
    rec.write_text("\n".join(lines) + "\n")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "gmemlab", "import", str(rec), "--from", "qemu",
                        "-o", str(tmp_path / "t.jsonl")], capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert took < 15, took
    assert sum(1 for _ in open(tmp_path / "t.jsonl")) == 1 + 1 + 20000


def test_a_time_no_float_holds_is_bad_input_not_an_internal_error(tmp_path):
    """"t" with 400 digits: exit 2 naming the file and line, never "internal error"."""
    import subprocess
    import sys
    f = tmp_path / "t.jsonl"
    f.write_text('{"format": "gmemlab-trace/1", "platform": "snp", "series": "v8", "page_size": 4096}\n'
                 '{"op": "create_gmem", "size": 8192, "flags": ["MMAP"], "t": 1' + "0" * 400 + '}\n')
    r = subprocess.run([sys.executable, "-m", "gmemlab", "check-trace", str(f)], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert f"{f}:2: t must be a number of seconds" in r.stderr and "Traceback" not in r.stderr
