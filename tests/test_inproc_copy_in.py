"""The copy-in path's bookkeeping, cut to fewer syscalls and journal records (issue 11),
still leaves every state crash recovery needs. Tier: in-process."""

from __future__ import annotations

import os
import stat

from inproc import FS, _call, backing_kind, small_jpeg

from sisafs.crypto.blockfile import BLOCK, FLAG_PENDING, BlockFile
from sisafs.vault.inodes import ROOT
from sisafs.vault.store import Kind, open_backing, probe_fd


def _header(fs: FS, name: str) -> BlockFile:
    fd = open_backing(str(fs.root / name), os.O_RDONLY)
    try:
        return BlockFile.open(fd, fs.vault.keys.block)
    finally:
        os.close(fd)


def test_close_writes_the_size_and_the_pending_flag_before_release(tmp_path):
    """close(2) (flush) puts the grown size and the pending flag in the header in one
    write; a daemon killed before the kernel's release leaves it for recovery."""
    fs = FS(tmp_path / "v")
    photo = small_jpeg(5, (160, 120))
    fh = fs.open("/p.jpg", os.O_WRONLY | os.O_CREAT)
    fs.write(fh, 0, photo)
    _call(fs.ops.flush, fh)
    bf = _header(fs, "p.jpg")
    assert bf.size == len(photo) and bf.flags & FLAG_PENDING
    fs.crash()
    fs.protect_all()
    assert backing_kind(fs, "p.jpg") is Kind.PROTECTED
    assert fs.read_file("/p.jpg") == photo


def test_a_file_created_and_synced_then_crashed_is_adopted(tmp_path):
    """create journals the new id and "being written" in one record: after a crash
    before close, recovery adopts what fsync made durable (no EIO)."""
    fs = FS(tmp_path / "v")
    data = os.urandom(3 * BLOCK + 5)
    fh = fs.open("/d.bin", os.O_WRONLY | os.O_CREAT)
    fs.write(fh, 0, data)
    fs.fsync(fh)
    fs.crash()
    assert fs.read_file("/d.bin") == data


def test_an_empty_file_opened_for_writing_is_adopted_after_a_crash(tmp_path):
    """The same for an empty file (mknod, or a crash right after create) made a block
    file by an open for writing."""
    fs = FS(tmp_path / "v")
    _call(fs.ops.mknod, ROOT, b"e.bin", stat.S_IFREG | 0o644, 0, fs.ctx)
    assert backing_kind(fs, "e.bin") is Kind.EMPTY
    fh = fs.open("/e.bin", os.O_WRONLY)
    fs.write(fh, 0, b"x" * 100)
    fs.fsync(fh)
    fs.crash()
    assert fs.read_file("/e.bin") == b"x" * 100
    fd = open_backing(str(fs.root / "e.bin"), os.O_RDONLY)
    try:
        assert probe_fd(fd, fs.vault.keys).kind is Kind.BLOCK
    finally:
        os.close(fd)


def _job_input(fs: FS):
    job = fs.jobs.take_nowait()
    return job, fs.vault.job_open(job)


def _finish(fs: FS, job, inp) -> None:
    if inp is not None:
        os.close(inp.fd)
    fs.jobs.finished(job)


def test_a_photo_copied_in_hands_its_written_bytes_to_its_job(tmp_path):
    fs = FS(tmp_path / "v")
    photo = small_jpeg(7, (160, 120))
    fh = fs.open("/p.jpg", os.O_WRONLY | os.O_CREAT)
    for off in range(0, len(photo), 1000):
        fs.write(fh, off, photo[off : off + 1000])
    fs.close(fh)
    job, inp = _job_input(fs)
    assert inp.plain == photo and fs.vault.job_read(inp) == photo
    _finish(fs, job, inp)
    assert fs.vault.handoff.held == 0


def test_writes_out_of_order_leave_the_job_to_read_the_file(tmp_path):
    fs = FS(tmp_path / "v")
    photo = small_jpeg(8, (160, 120))
    half = len(photo) // 2
    fh = fs.open("/p.jpg", os.O_WRONLY | os.O_CREAT)
    fs.write(fh, half, photo[half:])
    fs.write(fh, 0, photo[:half])
    fs.close(fh)
    job, inp = _job_input(fs)
    assert inp.plain is None and fs.vault.job_read(inp) == photo
    _finish(fs, job, inp)
    fs.protect_all()
    assert fs.read_file("/p.jpg") == photo and fs.vault.handoff.held == 0


def test_a_rewrite_with_o_trunc_hands_over_the_new_bytes(tmp_path):
    fs = FS(tmp_path / "v")
    old, new = small_jpeg(9, (160, 120)), small_jpeg(10, (160, 120))
    fs.write_file("/p.jpg", old)
    fs.protect_all()
    fs.write_file("/p.jpg", new)  # O_TRUNC: a new stream, a new generation
    job, inp = _job_input(fs)
    assert inp.plain == new
    _finish(fs, job, inp)
    fs.protect_all()
    assert fs.read_file("/p.jpg") == new and fs.vault.handoff.held == 0


def test_with_every_runner_busy_nothing_is_held_and_a_superseded_job_reads_nothing(
        tmp_path):
    """A job waiting behind others would read the file later anyway: no bytes are held
    for it during the copy. A job superseded by a rewrite gets no input at all."""
    fs = FS(tmp_path / "v")
    assert fs.jobs.runners == 1
    a, b = small_jpeg(13, (160, 120)), small_jpeg(14, (160, 120))
    fs.write_file("/a.jpg", a)  # queued: the one runner will be busy with it
    fs.write_file("/b.jpg", b)
    assert fs.vault.handoff.held == len(a)  # a's only
    fs.write_file("/a.jpg", b)  # supersedes a's job
    job, inp = _job_input(fs)
    assert inp is None
    _finish(fs, job, inp)
    job, inp = _job_input(fs)
    assert inp.plain is None and fs.vault.job_read(inp) == b
    _finish(fs, job, inp)
    fs.protect_all()
    assert fs.read_file("/a.jpg") == b and fs.read_file("/b.jpg") == b
    assert fs.vault.handoff.held == 0


def test_a_write_after_close_gives_the_next_job_the_file_not_the_old_stream(tmp_path):
    fs = FS(tmp_path / "v")
    photo = small_jpeg(11, (160, 120))
    fs.write_file("/p.jpg", photo)
    fh = fs.open("/p.jpg", os.O_WRONLY)
    fs.write(fh, 0, photo[:2])  # same bytes, a new generation, no stream
    fs.close(fh)
    fs.protect_all()
    assert backing_kind(fs, "p.jpg") is Kind.PROTECTED
    assert fs.read_file("/p.jpg") == photo and fs.vault.handoff.held == 0


def test_past_its_budget_the_job_reads_the_file(tmp_path):
    fs = FS(tmp_path / "v")
    fs.vault.handoff.budget = 1000
    photo = small_jpeg(12, (160, 120))
    assert len(photo) > 1000
    fs.write_file("/p.jpg", photo)
    job, inp = _job_input(fs)
    assert inp.plain is None and fs.vault.job_read(inp) == photo
    _finish(fs, job, inp)
    assert fs.vault.handoff.held == 0


def test_an_overwrite_through_a_hard_link_mid_stream_is_what_the_job_protects(tmp_path):
    """Another descriptor, through a hard link, changes bytes the stream already wrote:
    the job must protect what is on disk, not the stream's stale copy, and that is what
    reads back."""
    fs = FS(tmp_path / "v")
    photo = small_jpeg(11, (160, 120))
    half = len(photo) // 2
    fh = fs.open("/p.jpg", os.O_WRONLY | os.O_CREAT)
    fs.write(fh, 0, photo[:half])
    assert fs.vault.handoff.held == half  # the stream is being kept
    fs.link("/p.jpg", "/q.jpg")
    other = fs.open("/q.jpg", os.O_WRONLY)
    at = half - 10  # inside the scan data
    fs.write(other, at, bytes([photo[at] ^ 0x01]))
    fs.close(other)
    fs.unlink("/q.jpg")  # one link again: the last close makes it a job
    fs.write(fh, half, photo[half:])
    fs.close(fh)
    on_disk = photo[:at] + bytes([photo[at] ^ 0x01]) + photo[at + 1 :]
    assert fs.vault.handoff.held == 0  # nothing kept for the job: it reads the file
    fs.protect_all()
    assert backing_kind(fs, "p.jpg") is Kind.PROTECTED
    assert fs.read_file("/p.jpg") == on_disk


def test_a_reader_open_across_the_hand_off_and_the_commit_reads_every_version(tmp_path):
    """A read-only descriptor held from the copy through the job's commit reads the
    photo as written, before and after the protection commit."""
    fs = FS(tmp_path / "v")
    photo = small_jpeg(12, (160, 120))
    fh = fs.open("/p.jpg", os.O_WRONLY | os.O_CREAT)
    reader = fs.open("/p.jpg", os.O_RDONLY)
    fs.write(fh, 0, photo)
    fs.close(fh)
    assert fs.read(reader) == photo
    fs.protect_all()
    assert backing_kind(fs, "p.jpg") is Kind.PROTECTED
    assert fs.read(reader) == photo
    fs.close(reader)
    assert fs.vault.handoff.held == 0
